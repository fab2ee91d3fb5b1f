"""OL3I's 423 tabular features: names, descriptions, groups and how each one is drawn.

Names follow the release (Zambrano Chaves et al. 2023; the AMF-MedIT paper, Table B.1):
demographics (``age_at_scan``, ``gender``, ``bmi``, ``smoker``, ``CCI``), exponentially
weighted labs and vitals (``exp_wt_lab_*``), ICD-10 chapter groups (``Chapter_IX_3``), CPT
groups (``Evaluation_14``) and ATC level-2 drug codes (``C09``). Counts are zero-inflated
(most patients have none of most codes), labs are skewed where real labs are, and values go
missing at realistic rates. 5 + 31 + 243 + 51 + 93 = 423.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureDef:
    name: str
    kind: str  # age | sex | bmi | smoker | cci | lab | count
    description: str
    group: str
    # lab: mean (or median when log), sd (or log-sd), log-normal?, missing rate, loadings
    mean: float = 0.0
    sd: float = 0.0
    log: bool = False
    missing: float = 0.0
    per_decade: float = 0.0  # shift per 10 years of age (in sd units)
    per_adiposity: float = 0.0  # shift per sd of adiposity (in sd units)
    decimals: int = 1
    # count: probability of any, mean extra count when present, age slope (logit per decade)
    prevalence: float = 0.0
    rate: float = 0.0
    age_slope: float = 0.0


DEMOGRAPHICS = [
    FeatureDef("age_at_scan", "age", "Age at time of abdominal scan in years", "Demographics"),
    FeatureDef("gender", "sex", "Whether the patient is male", "Demographics"),
    FeatureDef("bmi", "bmi", "Body mass index at the time of the scan [kg/m^2]", "Demographics", missing=0.08),
    FeatureDef("smoker", "smoker", "Whether it was documented that the patient is a smoker in the year prior to "
               "abdominal scan", "Demographics", missing=0.10),
    FeatureDef("CCI", "cci", "Charlson Comorbidity Index", "Demographics"),
]

# name, description, mean/median, sd/log-sd, log-normal, missing rate, per decade, per adiposity, decimals
_LABS = [
    ("systolic", "systolic blood pressure [mm Hg]", 127, 17, False, 0.06, 0.25, 0.2, 1),
    ("diastolic", "diastolic blood pressure [mm Hg]", 75, 11, False, 0.06, -0.1, 0.2, 1),
    ("pulse", "heart rate [beats/min]", 79, 13, False, 0.07, -0.05, 0.1, 1),
    ("resp_rate", "respiratory rate [breaths/min]", 17, 2.5, False, 0.15, 0.05, 0.05, 1),
    ("temp", "body temperature [C]", 36.8, 0.35, False, 0.10, 0.0, 0.0, 2),
    ("spo2", "oxygen saturation [%]", 97.2, 1.8, False, 0.18, -0.15, -0.1, 1),
    ("weight", "body weight [kg]", 80, 20, False, 0.10, 0.0, 0.0, 1),
    ("ldl", "LDL cholesterol [mg/dL]", 108, 36, False, 0.28, -0.05, 0.1, 1),
    ("hdl", "HDL cholesterol [mg/dL]", 50, 15, False, 0.28, 0.05, -0.35, 1),
    ("cholesterol", "total cholesterol [mg/dL]", 183, 42, False, 0.28, -0.05, 0.1, 1),
    ("triglycerides", "triglycerides [mg/dL]", 125, 0.5, True, 0.30, 0.0, 0.4, 1),
    ("glucose", "glucose [mg/dL]", 102, 0.22, True, 0.10, 0.15, 0.3, 1),
    ("hba1c", "hemoglobin A1c [%]", 5.8, 0.14, True, 0.32, 0.15, 0.35, 2),
    ("creatinine", "creatinine [mg/dL]", 0.95, 0.35, True, 0.10, 0.2, 0.05, 2),
    ("bun", "blood urea nitrogen [mg/dL]", 16, 0.4, True, 0.10, 0.2, 0.0, 1),
    ("sodium", "sodium [mmol/L]", 139, 3, False, 0.09, -0.05, 0.0, 1),
    ("potassium", "potassium [mmol/L]", 4.2, 0.45, False, 0.09, 0.05, 0.0, 2),
    ("chloride", "chloride [mmol/L]", 103, 3.5, False, 0.10, 0.0, 0.0, 1),
    ("bicarbonate", "bicarbonate [mmol/L]", 26, 3, False, 0.10, 0.0, 0.0, 1),
    ("calcium", "calcium [mg/dL]", 9.3, 0.5, False, 0.12, -0.05, 0.0, 2),
    ("hemoglobin", "hemoglobin [g/dL]", 13.2, 1.9, False, 0.08, -0.15, 0.05, 1),
    ("hematocrit", "hematocrit [%]", 39.5, 5.5, False, 0.08, -0.15, 0.05, 1),
    ("wbc", "white blood cell count [10^3/uL]", 7.2, 0.3, True, 0.08, 0.0, 0.1, 2),
    ("platelets", "platelet count [10^3/uL]", 245, 75, False, 0.08, -0.1, 0.05, 0),
    ("alt", "alanine aminotransferase [U/L]", 24, 0.5, True, 0.20, -0.1, 0.25, 0),
    ("ast", "aspartate aminotransferase [U/L]", 25, 0.45, True, 0.20, 0.0, 0.15, 0),
    ("alk_phos", "alkaline phosphatase [U/L]", 80, 0.35, True, 0.22, 0.05, 0.05, 0),
    ("bilirubin", "total bilirubin [mg/dL]", 0.6, 0.5, True, 0.22, 0.0, 0.0, 2),
    ("albumin", "albumin [g/dL]", 4.0, 0.5, False, 0.25, -0.15, 0.0, 2),
    ("inr", "international normalized ratio", 1.05, 0.15, True, 0.50, 0.1, 0.0, 2),
    ("tsh", "thyroid stimulating hormone [mIU/L]", 1.8, 0.6, True, 0.60, 0.05, 0.0, 2),
]
LABS = [
    FeatureDef(f"exp_wt_lab_{n}", "lab", f"Exponentially weighted average of measurements of {d} during the year "
               f"prior to abdominal scan", "Labs and vitals", mean=m, sd=s, log=lg, missing=miss, per_decade=pd_,
               per_adiposity=pa, decimals=dec)
    for n, d, m, s, lg, miss, pd_, pa, dec in _LABS
]

# ICD-10 chapters: roman numeral, title, number of groups; named groups where the release's are known
_ICD_CHAPTERS = [
    ("I", "Certain infectious and parasitic diseases", 21), ("II", "Neoplasms", 5),
    ("III", "Diseases of the blood and blood-forming organs", 6),
    ("IV", "Endocrine, nutritional and metabolic diseases", 10), ("V", "Mental and behavioural disorders", 11),
    ("VI", "Diseases of the nervous system", 11), ("VII", "Diseases of the eye and adnexa", 11),
    ("VIII", "Diseases of the ear and mastoid process", 4), ("IX", "Diseases of the circulatory system", 10),
    ("X", "Diseases of the respiratory system", 10), ("XI", "Diseases of the digestive system", 10),
    ("XII", "Diseases of the skin and subcutaneous tissue", 8),
    ("XIII", "Diseases of the musculoskeletal system and connective tissue", 15),
    ("XIV", "Diseases of the genitourinary system", 11), ("XV", "Pregnancy, childbirth and the puerperium", 8),
    ("XVI", "Certain conditions originating in the perinatal period", 10),
    ("XVII", "Congenital malformations, deformations and chromosomal abnormalities", 11),
    ("XVIII", "Symptoms, signs and abnormal clinical and laboratory findings", 13),
    ("XIX", "Injury, poisoning and certain other consequences of external causes", 26),
    ("XX", "External causes of morbidity and mortality", 18),
    ("XXI", "Factors influencing health status and contact with health services", 14),
]
_ICD_GROUPS = {
    "II": ["Malignant neoplasms", "In situ neoplasms", "Benign neoplasms",
           "Neoplasms of uncertain or unknown behaviour", "Neoplasms of unspecified behaviour"],
    "IX": ["Acute rheumatic fever", "Chronic rheumatic heart diseases", "Hypertensive diseases",
           "Ischaemic heart diseases", "Pulmonary heart disease and diseases of pulmonary circulation",
           "Other forms of heart disease", "Cerebrovascular diseases",
           "Diseases of arteries, arterioles and capillaries",
           "Diseases of veins, lymphatic vessels and lymph nodes",
           "Other and unspecified disorders of the circulatory system"],
}

_CPT = {
    "Evaluation": ["Office or other outpatient services", "Hospital observation services",
                   "Hospital inpatient services", "Consultations", "Emergency department services",
                   "Critical care services", "Nursing facility services",
                   "Domiciliary, rest home or custodial care services", "Home services", "Prolonged services",
                   "Case management services", "Care plan oversight services",
                   "Non-face-to-face services", "Preventive Medicine Services"],
    "Surgery": ["General Surgical Procedures", "Integumentary system", "Musculoskeletal system",
                "Respiratory system", "Cardiovascular system", "Hemic and lymphatic systems",
                "Mediastinum and diaphragm", "Digestive system", "Urinary system", "Male genital system",
                "Female genital system", "Endocrine system", "Nervous system", "Eye and ocular adnexa"],
    "Radiology": ["Diagnostic radiology", "Diagnostic ultrasound", "Radiologic guidance", "Breast mammography",
                  "Bone and joint studies", "Radiation oncology", "Nuclear medicine"],
    "Pathology": ["Organ or disease oriented panels", "Drug assay", "Therapeutic drug assays",
                  "Evocative and suppression testing", "Clinical pathology consultations", "Urinalysis"],
    "Medical": ["Immune globulins", "Immunization administration", "Vaccines and toxoids", "Psychiatry",
                "Dialysis", "Gastroenterology", "Ophthalmology", "Biofeedback",
                "Special Otorhinolaryngologic Services and Procedures", "Cardiovascular services"],
}

_ATC = """A01 Stomatological Preparations|A02 Drugs For Acid Related Disorders|A03 Drugs For Functional Gastrointestinal
Disorders|A04 Antiemetics And Antinauseants|A05 Bile And Liver Therapy|A06 Drugs For Constipation|A07 Antidiarrheals,
Intestinal Antiinflammatory/Antiinfective Agents|A08 Antiobesity Preparations|A09 Digestives, Incl. Enzymes|A10 Drugs
Used In Diabetes|A11 Vitamins|A12 Mineral Supplements|A13 Tonics|A14 Anabolic Agents For Systemic Use|A15 Appetite
Stimulants|A16 Other Alimentary Tract And Metabolism Products|B01 Antithrombotic Agents|B02 Antihemorrhagics|B03
Antianemic Preparations|B05 Blood Substitutes And Perfusion Solutions|B06 Other Hematological Agents|C01 Cardiac
Therapy|C02 Antihypertensives|C03 Diuretics|C04 Peripheral Vasodilators|C05 Vasoprotectives|C07 Beta Blocking
Agents|C08 Calcium Channel Blockers|C09 Agents Acting On The Renin-Angiotensin System|C10 Lipid Modifying Agents|D01
Antifungals For Dermatological Use|D02 Emollients And Protectives|D03 Preparations For Treatment Of Wounds And
Ulcers|D04 Antipruritics, Incl. Antihistamines, Anesthetics|D05 Antipsoriatics|D06 Antibiotics And Chemotherapeutics
For Dermatological Use|D07 Corticosteroids, Dermatological Preparations|D08 Antiseptics And Disinfectants|D09
Medicated Dressings|D10 Anti-Acne Preparations|D11 Other Dermatological Preparations|G01 Gynecological
Antiinfectives And Antiseptics|G02 Other Gynecologicals|G03 Sex Hormones And Modulators Of The Genital System|G04
Urologicals|H01 Pituitary And Hypothalamic Hormones And Analogues|H02 Corticosteroids For Systemic Use|H03 Thyroid
Therapy|H04 Pancreatic Hormones|H05 Calcium Homeostasis|J01 Antibacterials For Systemic Use|J02 Antimycotics For
Systemic Use|J04 Antimycobacterials|J05 Antivirals For Systemic Use|J06 Immune Sera And Immunoglobulins|J07
Vaccines|L01 Antineoplastic Agents|L02 Endocrine Therapy|L03 Immunostimulants|L04 Immunosuppressants|M01
Antiinflammatory And Antirheumatic Products|M02 Topical Products For Joint And Muscular Pain|M03 Muscle
Relaxants|M04 Antigout Preparations|M05 Drugs For Treatment Of Bone Diseases|M09 Other Drugs For Disorders Of The
Musculo-Skeletal System|N01 Anesthetics|N02 Analgesics|N03 Antiepileptics|N04 Anti-Parkinson Drugs|N05
Psycholeptics|N06 Psychoanaleptics|N07 Other Nervous System Drugs|P01 Antiprotozoals|P02 Anthelmintics|P03
Ectoparasiticides, Incl. Scabicides, Insecticides And Repellents|R01 Nasal Preparations|R02 Throat
Preparations|R03 Drugs For Obstructive Airway Diseases|R05 Cough And Cold Preparations|R06 Antihistamines For
Systemic Use|R07 Other Respiratory System Products|S01 Ophthalmologicals|S02 Otologicals|S03 Ophthalmological And
Otological Preparations|V01 Allergens|V03 All Other Therapeutic Products|V04 Diagnostic Agents|V06 General
Nutrients|V07 All Other Non-Therapeutic Products|V08 Contrast Media|V09 Diagnostic Radiopharmaceuticals|V10
Therapeutic Radiopharmaceuticals"""

# prevalence, extra count rate and age slope for codes whose real frequency matters
_COMMON = {
    "C10": (0.26, 3.0, 0.55), "B01": (0.18, 3.0, 0.6), "C03": (0.12, 2.5, 0.55), "C09": (0.22, 3.0, 0.5),
    "C07": (0.15, 2.5, 0.45), "C08": (0.10, 2.5, 0.45), "A10": (0.10, 4.0, 0.3), "N02": (0.35, 3.0, 0.1),
    "J01": (0.30, 1.5, 0.0), "A02": (0.25, 2.5, 0.2), "Chapter_IX_3": (0.32, 2.0, 0.55),
    "Chapter_IX_4": (0.02, 1.5, 0.4), "Chapter_XVIII_1": (0.40, 3.0, 0.1), "Evaluation_1": (0.75, 5.0, 0.1),
    "Evaluation_14": (0.22, 0.5, -0.1), "Radiology_1": (0.55, 2.0, 0.2), "Pathology_1": (0.6, 3.0, 0.15),
}


def _counts() -> list[FeatureDef]:
    rng = np.random.default_rng(423)  # fixed: the code frequencies are part of the vocabulary, not of a seed
    out = []

    def add(name: str, description: str, group: str) -> None:
        prev, rate, slope = _COMMON.get(name, (0.0, 0.0, 0.0))
        if not prev:
            prev = float(np.clip(np.exp(rng.normal(np.log(0.04), 1.0)), 0.003, 0.4))
            rate = float(rng.uniform(0.3, 3.0))
            slope = float(rng.normal(0.15, 0.2))
        out.append(FeatureDef(name, "count", description, group, prevalence=prev, rate=rate, age_slope=slope,
                              decimals=0))

    for numeral, title, n in _ICD_CHAPTERS:
        names = _ICD_GROUPS.get(numeral, [])
        for k in range(1, n + 1):
            what = names[k - 1] if k <= len(names) else f"{title}, group {k}"
            add(f"Chapter_{numeral}_{k}", f"Number of times an ICD was documented in the year prior to imaging: {what}",
                "ICD chapters")
    for section, titles in _CPT.items():
        for k, title in enumerate(titles, start=1):
            add(f"{section}_{k}", f"Number of times a CPT code was documented in the group: {title}", "CPT groups")
    for entry in " ".join(_ATC.split("\n")).split("|"):
        code, title = entry.strip().split(" ", 1)
        add(code, f"Number of prescriptions that match ATC code classification: {title}", "ATC drug codes")
    return out


def vocabulary() -> list[FeatureDef]:
    """All 423 features in the order the synthetic ``clinical_data.csv`` lists them."""
    return DEMOGRAPHICS + LABS + _counts()

"""amfmedit: AMF-MedIT (Yu et al.) end to end for medical image + tabular data.

The library (``amfmedit.data``, ``amfmedit.models``, ``amfmedit.train``, ``amfmedit.stages``,
``amfmedit.explain``) imports without Typer or Rich; only ``amfmedit.cli`` prints.
"""

__version__ = "0.1.0"

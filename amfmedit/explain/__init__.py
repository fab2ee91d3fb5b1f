"""Explanations and reports: Integrated Gradients (captum), Grad-CAM (pytorch-grad-cam), the
incomplete-tabular experiment's masking, and the run report a person reads.

- :mod:`~amfmedit.explain.ig`: IG attributions, importance table, completeness check.
- :mod:`~amfmedit.explain.gradcam`: Grad-CAMs, CAM mass inside a known image region, overlays.
- :mod:`~amfmedit.explain.targets`: which model of a run is explained and the views the
  explainers see (tabular branch with the image fixed; image-only with the tabular row fixed).
- :mod:`~amfmedit.explain.masking`: features replaced by training constants (§4.2.4, Table 4).
- :mod:`~amfmedit.explain.plots`: drawing (Figs. 4-6, training curves).
- :mod:`~amfmedit.explain.stage`: ``explain`` writing ``<run>/explain/...``.
- :mod:`~amfmedit.explain.report`: ``<run>/report.md``.
"""

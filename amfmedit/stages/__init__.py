"""The stages of the pipeline as library functions taking typed configs.

``pretrain`` -> ``rconf`` -> ``finetune`` -> ``evaluate`` (-> ``predict`` for new patients).
Each writes one folder of the run directory (:mod:`amfmedit.train.rundir`) and reports
progress through a callback; none of them prints.
"""

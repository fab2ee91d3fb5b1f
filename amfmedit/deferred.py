"""The heavy packages amfmedit imports only inside the functions that use them.

Each of these costs from a few hundredths of a second (Pillow) to seconds (torch, scikit-learn,
captum, pytorch-grad-cam) to import, and none of them is needed to answer ``amfmedit --help``,
a command's ``--help`` or a mistyped option. So no module that the CLI imports to build its
help imports one at module level, and a function-level import is there for one of these
packages (or for an amfmedit module that imports one at module level), for no other reason.
``tests/test_architecture.py`` checks both rules against the imports themselves, and
``benchmarks/bench_startup.py --packages`` prints what each package costs on this machine. An
entry that nothing imports any more is an error too: the list says what is deferred, not more.

Everything else (numpy, typer, rich, the standard library) is imported at the top of a module.
"""

from __future__ import annotations

#: top-level package name -> what amfmedit uses it for
DEFERRED: dict[str, str] = {
    "torch": "models, training, checkpoints (and --log tensorboard, through torch.utils.tensorboard)",
    "torchvision": "the ResNet image encoders and their ImageNet weights",
    "sklearn": "linear probes, ROC curves, stratified splits, imputation",
    "scipy": "DeLong intervals and other statistics",
    "pandas": "tables in and out (readers, predictions, importance tables)",
    "pyarrow": "Parquet files of prepared datasets",
    "matplotlib": "figures",
    "captum": "Integrated Gradients",
    "pytorch_grad_cam": "Grad-CAM (brings OpenCV)",
    "PIL": "reading and writing image files",
    "h5py": "OL3I's HDF5 slices",
    "pydicom": "DICOM images",
    "sksurv": "survival metrics (C-index, time-dependent AUC, Brier score) and the Cox reference fits",
    # optional: imported where they are used, and a missing one is a one-line error there
    "mamba_ssm": "fused Mamba kernels (CUDA only, optional)",
    "causal_conv1d": "fused causal convolution (CUDA only, optional)",
    "mlflow": "--log mlflow (optional)",
    "onnxruntime": "running an exported model's ONNX graph, ~0.3 s (optional: the export extra)",
}

"""Augmentation pipelines ("views") of joint-embedding SSL methods (SimCLR, BYOL, MoCo, ...).

One config (`cfg.augmentation.views`) gives two implementations of the same pipelines:

    config.py   ViewPipeline, parse_pipelines: the views list -> validated pipelines
    kernels.py  batched functional ops on float images [B, C, H, W] with per-sample parameters
                (resized_crop, adjust_*, to_grayscale, gaussian_blur, solarize) and their sampling
                helpers (sample_crop_boxes, sample_uniform)
    batch.py    BatchViews / BatchEval: the fast path. A whole uint8 batch is augmented on its
                device (CPU or CUDA) after transfer, with no Python loop over samples; used for
                in-memory datasets (ssl_bench.data.module)
    cpu.py      CpuViews / cpu_eval_transform: the same pipelines with torchvision.transforms.v2,
                per item in DataLoader workers, for image folders whose images differ in size

Per pipeline, in torchvision/SimCLR order: random resized crop + horizontal flip (one bilinear
resample), colour jitter (random op order per sample), random grayscale, Gaussian blur, solarize,
normalise. The kernels follow the formulas of `torchvision.transforms.v2.functional` (tests compare
them).

Why own kernels rather than kornia.augmentation: kornia runs every op over the whole batch whatever
its probability and re-validates parameters per call. On one CPU core (the default path), two 32 px
SimCLR views of a 256 batch ran at ~5,300 img/s here against ~2,500 img/s for the kornia pipeline
(RandomResizedCrop, flip, ColorJitter, RandomGrayscale, Normalize). Owning the kernels also lets us
match torchvision's sampling (RandomResizedCrop's 10 attempts + centre fallback) and formulas.
"""

"""Training throughput of ssl_bench's methods, beside lightly's loops of the same methods.

Three suites (`--suite`; any flag given wins over the suite's defaults):

methods (the default)
    Every method of `--methods` (default simclr,byol,swav; ResNet-18 at 32 px, batch 256, 3
    warm-up + 10 timed steps) built as a real run builds it (composed config, datamodule with
    on-device views, the method, a Lightning Trainer at precision=auto) on in-memory synthetic
    images: end-to-end training throughput in dataset images per second (every view of an image
    included), the view path alone, the FLOPs of a step against a matmul peak of the same dtype
    measured in the same run (MFU), peak memory. `--lightly` adds the comparison of the lightly
    suite for the methods lightly also has.

lightly (the CPU comparison preset of issue 17)
    Every method lightly 1.6.0 also implements and this checkout has (simclr, moco_v2, byol,
    simsiam, swav, barlow_twins, vicreg, dino, nnclr, mae), each at ResNet-18 / 32 px and again as
    a small-model row (the narrow ResNet-18 of the Fashion-MNIST experiments at 28 px, with the
    method's experiment=fmnist_<method> heads, views and optimizer); batch 128, 1 warm-up + 3
    timed steps, no FLOP count. Beside each row, in the same process: lightly's loop of the method
    as its users write it (bench.lightly_specs, bench.lightly_loop: its heads, losses, transforms
    on PIL images in 2 DataLoader workers, momentum helpers, memory bank) with the row's
    backbone, batch, views and optimizer family, in its fastest variant by hand (bf16 autocast +
    channels_last where the CPU has native bf16, fp32 + channels_last where not) and as written
    (fp32); and the bare-backbone bound (bench.bound). Columns: ratio_vs_lightly_fast /
    ratio_vs_lightly_fp32 = ssl_bench / lightly; pct_of_bound = ssl_bench as % of the bound,
    lightly_fast_pct_of_bound the same for lightly. MAE's rows take ViT-Tiny (ours.PATCH_METHODS).
    All 10 methods took 25 minutes on a quiet 2-core AMD EPYC Zen 4 (AVX512-BF16). A row that
    fails is named in the table's header, the other rows are written, and the exit status is 1.

gpu (`make bench-gpu`)
    Issue 17's GPU targets on one NVIDIA GPU: bench/gpu.py.

Every table is appended to BENCHMARKS.md (`--out`) with the CPU model and its bf16 support (native
or emulated), the command and the machine's load before and after; `--json` writes the rows.
"""

from ssl_bench.bench.cli import main
from ssl_bench.bench.table import COLUMNS, Row

__all__ = ["COLUMNS", "Row", "main"]

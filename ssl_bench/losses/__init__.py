"""SSL objectives as pure functions: tensors in, a loss (and optional logged terms) out; no module
state.

Each function names its paper and equation and follows its formula. By family:

* `contrastive`: NT-Xent (SimCLR), InfoNCE against a queue (MoCo), CMC's in-batch cross-view loss,
  CPC v2's InfoNCE over a grid of patches;
* `bootstrap`: BYOL's regression loss, SimSiam's negative cosine;
* `clustering`: Sinkhorn-Knopp codes and SwAV's swapped prediction;
* `distillation`: DINO's cross-entropy of a centred, sharpened teacher and its centre update;
* `nce`: noise-contrastive estimation against a memory bank (InstDisc, with its normaliser Z; CMC's
  cross-view form);
* `mi`: lower bounds on mutual information (JSD, DV, InfoNCE), AMDIM's and DIM's objectives built on
  them;
* `redundancy`: statistics of the batch of embeddings, Barlow Twins' cross-correlation and VICReg's
  variance / invariance / covariance terms.
* `reconstruction`: MAE's mean squared error on the masked patches, with per-patch normalised
  targets as an option.

Import from the family module (`from ssl_bench.losses.contrastive import nt_xent`); tests/losses/
checks each loss against a literal transcription of its formula.
"""

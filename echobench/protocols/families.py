"""The built-in protocol families, registered under the ``echobench.protocols`` entry-point group (pyproject.toml)
exactly as methods and datasets are; a package can add a family by registering its own :class:`Family`."""

from __future__ import annotations

from echobench.protocols import Family, finetune, frozen, segmentation, token_heads, wrappers

KNN = Family(frozen.knn_config, frozen.run_knn_family, frozen=True, trains=False)
PROBE = Family(frozen.probe_config, frozen.run_probe_family, frozen=True)
TOKENS = Family(token_heads.TokenHeadConfig.from_dict, token_heads.run_token_head_family, frozen=True)
CLIP_VARIANCE = Family(frozen.clip_variance_config, frozen.run_clip_variance_family, frozen=True)
FINETUNE = Family(finetune.FinetuneConfig.from_dict, finetune.run_finetune_family, frozen=False)
LABEL_SWEEP = Family(
    wrappers.SweepConfig.from_dict, wrappers.run_sweep_family, frozen=False, trains=False, task_kinds=None
)
KFOLD = Family(
    wrappers.KfoldConfig.from_dict, wrappers.run_kfold_family, frozen=False, check=wrappers.check_kfold, task_kinds=None
)
SEGMENTATION = Family(
    segmentation.SegmentationConfig.from_dict,
    segmentation.run_segmentation_family,
    frozen=True,
    task_kinds=("segmentation",),
)

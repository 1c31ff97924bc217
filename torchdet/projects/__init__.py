"""Research projects built on torchdet's public API, one package each (Detectron2's ``projects/``).

- ``point_rend``: PointRend ("PointRend: Image Segmentation as Rendering", Kirillov et al. 2020):
  point-based mask refinement for Mask R-CNN (``PointRendMaskHead``, ``StandardPointHead``) and
  semantic segmentation (``PointRendSemSegHead``); ``add_pointrend_config``.
- ``densepose``: DensePose R-CNN (dense human pose estimation); ``add_densepose_config``.
- ``deeplab``: DeepLab v3+ semantic segmentation; ``add_deeplab_config``.
- ``panoptic_deeplab``: Panoptic-DeepLab bottom-up panoptic segmentation;
  ``add_panoptic_deeplab_config``.
- ``tensormask``: TensorMask dense sliding-window instance segmentation.

The newer backbones of Detectron2's projects (ViTDet's ``ViT`` + ``SimpleFeaturePyramid``,
``MViT``, ``SwinTransformer`` and ``RegNet``) live in ``torchdet.modeling.backbone``.

Each project registers its heads in the core registries when its package is imported, so import
it (``import torchdet.projects.point_rend``) before building a model from its configs.
"""

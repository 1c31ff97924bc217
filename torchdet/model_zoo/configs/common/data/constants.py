# Input normalisation constants (per channel, 0-255 pixel values).
constants = dict(
    imagenet_rgb256_mean=[123.675, 116.28, 103.53],
    imagenet_rgb256_std=[58.395, 57.12, 57.375],
    imagenet_bgr256_mean=[103.530, 116.280, 123.675],
    # MSRA / Detectron1 models fold the std into their first conv, so they expect std 1.
    # Other models use the ImageNet std, [57.375, 57.120, 58.395] in BGR order.
    imagenet_bgr256_std=[1.0, 1.0, 1.0],
)

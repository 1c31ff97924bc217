# Optimizers. Set `optimizer.params.model = model` (the built model) before instantiating.
from torchdet.config import LazyCall as L

SGD = L("torch.optim.SGD")(
    params=L("torchdet.solver.build.get_default_optimizer_params")(
        weight_decay_norm=0.0,  # no weight decay on normalisation layers
    ),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)

AdamW = L("torch.optim.AdamW")(
    params=L("torchdet.solver.build.get_default_optimizer_params")(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.1,
)

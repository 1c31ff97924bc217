# Training settings read by the LazyConfig training loop (tools/lazyconfig_train_net.py).
train = dict(
    output_dir="./output",
    init_checkpoint="",  # a checkpoint path or URL to start from
    max_iter=90000,
    amp=dict(enabled=False),  # automatic mixed precision
    ddp=dict(  # arguments of DistributedDataParallel (and its gradient compression)
        broadcast_buffers=False,
        find_unused_parameters=False,
        fp16_compression=False,
    ),
    checkpointer=dict(period=5000, max_to_keep=100),  # PeriodicCheckpointer
    eval_period=5000,
    log_period=20,
    device="cuda",
)

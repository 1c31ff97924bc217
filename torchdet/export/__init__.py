"""Export and deployment: TorchScript (tracing), ONNX (run in ONNX Runtime) and torch.export.

See ``README.md`` in this folder for the support matrix.
"""

from .flatten import (
    DictSchema,
    FlattenedSchema,
    IdentitySchema,
    InstancesSchema,
    ListSchema,
    TensorWrapSchema,
    TracingAdapter,
    TupleSchema,
    flatten_to_tuple,
)
from .inference import export_inference_func, postprocess_outputs
from .onnx import export_onnx
from .torch_export import export_program
from .torchscript import dump_torchscript_IR, export_torchscript, scripting_with_instances

__all__ = [k for k in globals() if not k.startswith("_")]

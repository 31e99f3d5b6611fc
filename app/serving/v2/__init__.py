"""The Open Inference Protocol (KServe v2) over REST and gRPC, as Triton's clients speak it.

Both doors translate into the same typed objects and hand them to one data plane:

    messages.py            typed requests, responses and metadata, whatever door they came through
    tensors.py             data types; tensor data from JSON, raw bytes or gRPC contents, into float32 tensors
    binary.py              Triton's binary tensor data extension and the BYTES element layout
    rest.py                JSON (+ binary) request bodies in, response bodies out
    converters.py          gRPC messages in and out, and service errors as gRPC status codes
    outputs.py             the models' outputs (logits, probabilities) and Triton's classification extension
    grpc_predict_v2.proto  the protocol's gRPC service; the *_pb2* stubs beside it come from `make protos`

Nothing here imports the gRPC stubs except ``converters``: a process that also imports ``tritonclient.grpc``
(whose own stubs define the same ``inference.*`` messages) cannot load both.
"""

__all__: list[str] = []

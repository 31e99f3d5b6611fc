"""The Open Inference Protocol (KServe v2) over REST and gRPC, as Triton's clients speak it.

    grpc_predict_v2.proto  the protocol's gRPC service; the *_pb2* stubs beside it come from `make protos`
"""

__all__: list[str] = []

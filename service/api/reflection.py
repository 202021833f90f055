"""Server reflection, as ``grpc.reflection.v1`` and as ``grpc.reflection.v1alpha``.

grpcio-reflection serves only ``v1alpha``, while current grpcurl, Postman and gRPC UI ask for ``v1`` first (some
tools only for ``v1``). The two protocols are the same messages with the same field numbers under two package
names (grpc-proto's ``reflection/v1/reflection.proto`` is the ``v1alpha`` file renamed), so one servicer answers
both: on the ``v1`` method its ``v1alpha`` message classes encode exactly the bytes a ``v1`` client expects. The
``v1`` file itself (``v1alpha``'s descriptor with the package renamed) is added to the descriptor pool, so that
reflection describes its ``v1`` service like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

__all__ = ["V1ALPHA_SERVICE", "V1_SERVICE", "enable_reflection", "v1_file_descriptor"]

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PREFIX = ".grpc.reflection.v1alpha."
_V1_PREFIX = ".grpc.reflection.v1."


def _renamed(type_name: str) -> str:
    if type_name.startswith(_V1ALPHA_PREFIX):
        return _V1_PREFIX + type_name[len(_V1ALPHA_PREFIX) :]
    return type_name


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """``grpc/reflection/v1/reflection.proto``: the ``v1alpha`` file with its package (and the references to its
    own types) renamed; its language options, which name v1alpha packages, are dropped."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for message_field in message.field:
            if message_field.HasField("type_name"):  # set on a scalar field, even to "", it breaks the file
                message_field.type_name = _renamed(message_field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    return proto


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection for ``service_names`` (and both reflection services) on ``server``, as v1 and v1alpha."""
    _add_v1_file(descriptor_pool.Default())
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))

"""The GrpcWorkerAgentRuntimeHost of the distributed AutoGen runtime (autogen-ext[grpc]): routes
messages between the worker runtimes. AutoGen's host emits no spans (it has no tracer)."""

import argparse
import asyncio

from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntimeHost

parser = argparse.ArgumentParser()
parser.add_argument("--address", required=True)
args = parser.parse_args()


async def main():
    host = GrpcWorkerAgentRuntimeHost(address=args.address)
    host.start()
    await host.stop_when_signal(grace=1)


asyncio.run(main())

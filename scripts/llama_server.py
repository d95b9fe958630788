"""Run llama.cpp's own HTTP server (embedded in the ``xllamacpp`` wheel) on a GGUF file.

usage: python scripts/llama_server.py MODEL.gguf PORT [--alias NAME] [--ctx N] [--parallel N]

A real backend for tests and demos, no compiler and no hub download (see
docs/testing.md). Prints ``listening <address>`` once the HTTP threads run; the model is
ready when ``GET /health`` answers 200. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("port", type=int)
    parser.add_argument("--alias", default=None)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--embedding", action="store_true")
    args = parser.parse_args()

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    alias = args.alias or os.path.basename(args.model).rsplit(".gguf", 1)[0]
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True
    params.endpoint_metrics = True
    if args.embedding:
        params.embedding = True
    server = xlc.Server(params)  # keep the reference: the server stops when it is collected
    print("listening", server.listening_address, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    os._exit(0)  # the embedded server's threads do not join cleanly


if __name__ == "__main__":
    sys.exit(main())

"""A throwaway S3-compatible server on loopback, for the tests: moto's server on an ephemeral port.

Usage: s3_server.py [--min-part-size BYTES]

Prints `http://127.0.0.1:<port>` on stdout once it answers, then serves until its stdin closes
(the test process that started it exited or dropped it), so no server outlives its tests.
Credentials are not checked; any access key works. `--min-part-size` lowers S3's 5 MiB minimum
multipart part size so that tests can exercise multipart uploads with small files.
"""

import argparse
import logging
import threading
import os
import sys
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-part-size", type=int, default=None)
    args = parser.parse_args()
    if args.min_part_size is not None:
        # Read by moto when its S3 backend is imported.
        os.environ["S3_UPLOAD_PART_MIN_SIZE"] = str(args.min_part_size)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    moto_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def app(environ, start_response):
        # moto checks a conditional write (If-None-Match, If-Match) and then writes, in two
        # steps; S3 does both atomically. One request at a time restores that atomicity, which
        # the tests of two workers racing on one object depend on.
        with lock:
            return list(moto_app(environ, start_response))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    endpoint = f"http://{host}:{port}"
    # Answering, not just listening: the first request imports the S3 backend.
    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=30).read()
    print(endpoint, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()

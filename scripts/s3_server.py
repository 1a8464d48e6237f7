"""A throwaway S3-compatible server on loopback, for the tests: moto's server on an ephemeral port.

Usage: s3_server.py [--min-part-size BYTES]

Prints `http://127.0.0.1:<port>` on stdout once it answers, then serves until its stdin closes
(the test process that started it exited or dropped it), so no server outlives its tests.
Credentials are not checked; any access key works. `--min-part-size` lowers S3's 5 MiB minimum
multipart part size so that tests can exercise multipart uploads with small files.
"""

import argparse
import logging
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

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Answering, not just listening: the first request imports the S3 backend.
    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=30).read()
    print(endpoint, flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

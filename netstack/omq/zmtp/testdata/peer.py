# A libzmq peer for the interop tests: Debian's python3-zmq over libzmq.
# usage: peer.py client ENDPOINT SERVERKEY_HEX SIZES   (DEALER, CURVE client)
#        peer.py server ENDPOINT                       (ROUTER, CURVE server; prints its key)
import sys, zmq, binascii
import zmq.utils.z85

ctx = zmq.Context()
mode = sys.argv[1]
if mode == "client":
    endpoint, server_key, sizes = sys.argv[2], binascii.unhexlify(sys.argv[3]), [int(s) for s in sys.argv[4].split(",")]
    pub, sec = zmq.curve_keypair()
    print("clientkey", binascii.hexlify(zmq.utils.z85.decode(pub)).decode(), flush=True)
    s = ctx.socket(zmq.DEALER)
    s.curve_serverkey = zmq.utils.z85.encode(server_key)
    s.curve_publickey, s.curve_secretkey = pub, sec
    s.setsockopt(zmq.RCVTIMEO, 8000)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    for n in sizes:
        body = bytes((i * 7 + n) % 251 for i in range(n)) if n < 4096 else (b"\x5a" * n)
        s.send_multipart([b"echo", body])
        try:
            got = s.recv_multipart()
        except zmq.Again:
            print("timeout", n, flush=True)
            sys.exit(2)
        if got != [b"echo", body]:
            print("mismatch", n, [len(p) for p in got], flush=True)
            sys.exit(1)
        print("ok", n, flush=True)
elif mode == "server":
    endpoint = sys.argv[2]
    pub, sec = zmq.curve_keypair()
    s = ctx.socket(zmq.ROUTER)
    s.curve_server = True
    s.curve_secretkey = sec
    s.curve_publickey = pub
    s.setsockopt(zmq.LINGER, 0)
    s.bind(endpoint)
    print("serverkey", binascii.hexlify(zmq.utils.z85.decode(pub)).decode(), flush=True)
    s.setsockopt(zmq.RCVTIMEO, 20000)
    while True:
        try:
            parts = s.recv_multipart()
        except zmq.Again:
            break
        if parts[1:] == [b"quit"]:
            break
        s.send_multipart(parts)

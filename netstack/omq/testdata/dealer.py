# A libzmq DEALER speaking OxenMQ's message format to our server.
# usage: dealer.py ENDPOINT SERVERKEY_HEX
import sys, zmq, binascii
import zmq.utils.z85

ctx = zmq.Context()
pub, sec = zmq.curve_keypair()
s = ctx.socket(zmq.DEALER)
s.curve_serverkey = zmq.utils.z85.encode(binascii.unhexlify(sys.argv[2]))
s.curve_publickey, s.curve_secretkey = pub, sec
s.setsockopt(zmq.RCVTIMEO, 8000)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])

def ask(*parts):
    s.send_multipart(list(parts))
    return s.recv_multipart()

assert ask(b"HI") == [b"HELLO"], "HI"
assert ask(b"test.echo", b"tag1", b"a", b"b") == [b"REPLY", b"tag1", b"a", b"b"], "echo"
assert ask(b"test.nope", b"tag2") == [b"UNKNOWNCOMMAND", b"test.nope"], "unknown"
assert ask(b"admin.secret", b"tag3") == [b"FORBIDDEN", b"REPLY", b"tag3"], "forbidden"
assert ask(b"sn.data", b"tag4") == [b"FORBIDDEN_SN", b"REPLY", b"tag4"], "forbidden_sn"
assert ask(b"test.echo") == [b"NO_REPLY_TAG", b"test.echo"], "no reply tag"
print("ok", flush=True)

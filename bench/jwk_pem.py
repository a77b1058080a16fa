#!/usr/bin/env python3
"""The first RSA key of a JWKS document as a PEM public key (SubjectPublicKeyInfo), for
HAProxy's jwt_verify, which reads keys from PEM files.

    bench/jwk_pem.py JWKS_FILE > key.pem
"""

import base64
import json
import sys


def b64url_int(text):
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def der(tag, content):
    length = len(content)
    if length < 0x80:
        head = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        head = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return bytes([tag]) + head + content


def der_int(value):
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")  # room for a sign bit
    return der(0x02, raw)


def main():
    key = next(k for k in json.load(open(sys.argv[1]))["keys"] if k["kty"] == "RSA")
    rsa_public_key = der(0x30, der_int(b64url_int(key["n"])) + der_int(b64url_int(key["e"])))
    rsa_encryption = der(0x06, bytes.fromhex("2a864886f70d010101"))  # 1.2.840.113549.1.1.1
    algorithm = der(0x30, rsa_encryption + der(0x05, b""))
    spki = der(0x30, algorithm + der(0x03, b"\x00" + rsa_public_key))
    body = base64.b64encode(spki).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    print("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----")


if __name__ == "__main__":
    main()

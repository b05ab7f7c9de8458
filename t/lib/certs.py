"""
Test certificates made with the openssl CLI: a CA and a leaf signed by
it, EC P-256 (fast to generate).
"""

import os
import subprocess
import tempfile


class CertSet:
    """Paths of a generated CA and leaf: ca_cert, ca_key, cert, key."""

    def __init__(self, directory, name):
        self.dir = directory
        self.ca_cert = os.path.join(directory, name + "-ca.pem")
        self.ca_key = os.path.join(directory, name + "-ca.key")
        self.cert = os.path.join(directory, name + ".pem")
        self.key = os.path.join(directory, name + ".key")


def _openssl(*args, stdin=None):
    r = subprocess.run(["openssl"] + list(args), input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.decode(errors="replace")))
    return r.stdout


def _ec_key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    os.chmod(path, 0o644)


def gen_ca_and_cert(cn, sans=None, directory=None, name=None):
    """Creates a CA ("mctest CA for CN") and a leaf with subject CN=cn and
    subjectAltName DNS entries sans (default [cn]); IP addresses in sans
    become IP entries. Returns a CertSet. directory defaults to a fresh
    temp dir (left for the caller's TempDir or the OS to clean)."""
    directory = directory or tempfile.mkdtemp(prefix="mctest-certs-")
    name = name or cn.replace("*", "star")
    cs = CertSet(directory, name)
    sans = sans or [cn]

    _ec_key(cs.ca_key)
    _openssl("req", "-x509", "-new", "-key", cs.ca_key, "-days", "30", "-sha256",
             "-subj", "/CN=mctest CA for %s" % cn, "-out", cs.ca_cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    _ec_key(cs.key)
    csr = os.path.join(directory, name + ".csr")
    _openssl("req", "-new", "-key", cs.key, "-subj", "/CN=%s" % cn, "-out", csr)

    def alt(s):
        return ("IP:" if s.replace(".", "").isdigit() or ":" in s else "DNS:") + s

    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("keyUsage=critical,digitalSignature\n")
        f.write("extendedKeyUsage=serverAuth\n")
        f.write("subjectAltName=%s\n" % ",".join(alt(s) for s in sans))
    _openssl("x509", "-req", "-in", csr, "-CA", cs.ca_cert, "-CAkey", cs.ca_key,
             "-CAcreateserial", "-days", "30", "-sha256", "-extfile", ext, "-out", cs.cert)
    return cs


def cert_subject(pem_path):
    """The subject line of a PEM certificate, as openssl prints it."""
    return _openssl("x509", "-in", pem_path, "-noout", "-subject").decode().strip()

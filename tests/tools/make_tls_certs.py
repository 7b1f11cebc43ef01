"""Writes the certificates of the DICOM TLS tests with the `cryptography`
package (independent of rustls, which the device verifies with):

    python tests/tools/make_tls_certs.py OUT_DIR

- ca.pem / ca.key: the hospital's CA;
- server.pem / server.key: a certificate for 127.0.0.1 and localhost,
  issued by the CA, valid now, for TLS servers and clients alike (the
  device and the PACS both receive and send);
- client.pem / client.key: a client certificate issued by the CA;
- expired.pem / expired.key: like server.pem (server and client), but
  expired yesterday;
- rogue-ca.pem, rogue.pem / rogue.key: another CA and a server and client
  certificate for 127.0.0.1 it issued (a "wrong CA" for either side).
EC P-256 keys, PEM (PKCS#8 keys). `cryptography` comes into .venv-tools with
imgtool (.ci/setup).
"""
import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write(out, stem, cert, key=None):
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (out / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def ca(common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(name(common_name)).issuer_name(name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def leaf(issuer_cert, issuer_key, common_name, usages, not_before, not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(name(common_name)).issuer_name(issuer_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = ca("TumorXAI test hospital CA")
    write(out, "ca", ca_cert, ca_key)
    server = [ExtendedKeyUsageOID.SERVER_AUTH]
    client = [ExtendedKeyUsageOID.CLIENT_AUTH]
    write(out, "server", *leaf(ca_cert, ca_key, "127.0.0.1", server + client, NOW - DAY, NOW + 30 * DAY))
    write(out, "client", *leaf(ca_cert, ca_key, "SCANNER", client, NOW - DAY, NOW + 30 * DAY))
    write(out, "expired", *leaf(ca_cert, ca_key, "127.0.0.1", server + client, NOW - 30 * DAY, NOW - DAY))
    rogue_cert, rogue_key = ca("Rogue CA")
    write(out, "rogue-ca", rogue_cert)
    write(out, "rogue", *leaf(rogue_cert, rogue_key, "127.0.0.1", server + client, NOW - DAY, NOW + 30 * DAY))


if __name__ == "__main__":
    main()

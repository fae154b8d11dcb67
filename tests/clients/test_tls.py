"""Client setups for sproutd's TLS listeners, as README's "Clients over TLS" describes them.

- stunnel (Debian's) as a local TLS client: it must refuse a server it cannot verify
  (wrong CA, wrong name), and with a client certificate it gets a plain client through
  an mtls listener unchanged. (The whole greenstalk suite also runs through stunnel: the
  `[stunnel]` tests of test_greenstalk.py.)
- Python without a wrapper: greenstalk takes a connected socket, and an `ssl.SSLSocket`
  is one; with a token, `auth` is sent on it before greenstalk gets it.
"""

import socket
import ssl

import greenstalk
import pytest

import tlsutil
from tlsutil import TEST_TOKEN as TOKEN


def ssl_context(pki, cert=False):
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


def tls_socket(pki, address, cert=False, server_hostname="localhost"):
    raw = socket.create_connection(address, timeout=10)
    return ssl_context(pki, cert).wrap_socket(raw, server_hostname=server_hostname)


def read_line(sock):
    """One reply line, read byte by byte so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            break
        line += b
    return line


def authenticate(sock, token):
    sock.sendall(b"auth " + token.encode() + b"\r\n")
    return read_line(sock)


def stunnel(pki, srv, **kw):
    host, port = srv.tls_address
    try:
        return tlsutil.Stunnel(f"{host}:{port}", kw.pop("ca", pki.ca), **kw)
    except RuntimeError as e:
        pytest.fail(str(e))


def test_stunnel_refuses_a_server_it_cannot_verify(pki, tls_server):
    srv = tls_server("none")
    for kw in ({"ca": pki.other_ca}, {"check_host": "queue.example.com"}):
        st = stunnel(pki, srv, **kw)
        try:
            c = greenstalk.Client(st.address)
            # stunnel accepted the plain connection, then failed the handshake and
            # closed it: the first command finds the connection gone.
            with pytest.raises(OSError):
                c.put("must not arrive")
            c.close()
        finally:
            st.cleanup()
    with greenstalk.Client(srv.plain_address) as c:
        assert c.stats()["current-jobs-ready"] == 0


def test_stunnel_with_a_client_certificate_on_an_mtls_listener(pki, tls_server):
    srv = tls_server("mtls")
    st = stunnel(pki, srv, cert=pki.client_cert, key=pki.client_key)
    try:
        with greenstalk.Client(st.address) as c:
            jid = c.put("through stunnel with a certificate")
            assert c.reserve(timeout=5).id == jid
    finally:
        st.cleanup()
    # Without the certificate, the listener rejects the handshake.
    st = stunnel(pki, srv)
    try:
        c = greenstalk.Client(st.address)
        with pytest.raises(OSError):
            c.stats()
        c.close()
    finally:
        st.cleanup()


def test_greenstalk_over_an_ssl_socket(pki, tls_server):
    srv = tls_server("none")
    with greenstalk.Client(tls_socket(pki, srv.tls_address)) as c, \
            greenstalk.Client(srv.plain_address) as plain:
        jid = c.put("over python's ssl")
        assert plain.peek(jid).body == "over python's ssl"
        job = c.reserve(timeout=5)
        assert (job.id, job.body) == (jid, "over python's ssl")
        c.delete(job)
    # The server's name is checked: one it does not carry fails the handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_socket(pki, srv.tls_address, server_hostname="queue.example.com")


def test_greenstalk_over_ssl_with_a_token(pki, tls_server):
    srv = tls_server("token")
    sock = tls_socket(pki, srv.tls_address)
    assert authenticate(sock, TOKEN) == b"AUTHENTICATED\r\n"
    with greenstalk.Client(sock) as c:
        jid = c.put("authenticated")
        assert c.stats_job(jid)["state"] == "ready"
    # A wrong token: UNAUTHORIZED, and the server closes the connection.
    sock = tls_socket(pki, srv.tls_address)
    assert authenticate(sock, "f" * 64) == b"UNAUTHORIZED\r\n"
    assert sock.recv(1) == b""
    sock.close()
    # No token: every command is UNAUTHORIZED.
    sock = tls_socket(pki, srv.tls_address)
    with pytest.raises(greenstalk.UnknownResponseError) as e:
        greenstalk.Client(sock).put("no token")
    assert e.value.status == b"UNAUTHORIZED"
    sock.close()


def test_greenstalk_over_ssl_with_a_client_certificate(pki, tls_server):
    srv = tls_server("mtls")
    with greenstalk.Client(tls_socket(pki, srv.tls_address, cert=True)) as c:
        jid = c.put("mtls")
        assert c.peek(jid).body == "mtls"

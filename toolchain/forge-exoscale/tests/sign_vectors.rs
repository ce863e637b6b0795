//! EXO2-HMAC-SHA256 against the official test vectors and forge's own (API-NOTES §2.3).

use forge_exoscale::sign;

const OFFICIAL_KEY: &str = "EXOxxxxxxxxxxxxxxxxxxxxxxxx";
const OFFICIAL_SECRET: &str = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const EXPIRES_2077: u64 = 3_376_684_800;

#[test]
fn official_vectors() {
    assert_eq!(OFFICIAL_SECRET.len(), 43);
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [u8],
        &'a [(&'a str, &'a str)],
        &'a str,
    );
    let cases: [Case; 3] = [
        (
            "GET",
            "/v2/zone",
            b"",
            &[],
            "Ntbq/p0HVmA3Zg1HHY+Lq1vjFGi7HeMrrgXDS5jRNlY=",
        ),
        (
            "GET",
            "/v2/zone",
            b"",
            &[("k1", "v1"), ("k2", "v2")],
            "iqOBz13+44L5j0uJclE8hmUhQQcvtCSoPEOXYK6liqY=",
        ),
        (
            "POST",
            "/v2/load-balancer",
            br#"{"name": "foo"}"#,
            &[],
            "duldkM0+pgWRtUznj0rMrZauzsYOtSVLn1LCGcs7CcE=",
        ),
    ];
    for (method, path, body, query, want) in cases {
        let msg = sign::message(method, path, body, query, EXPIRES_2077);
        assert_eq!(
            sign::signature(OFFICIAL_SECRET.as_bytes(), &msg),
            want,
            "{method} {path} {query:?}"
        );
        assert!(sign::verify(OFFICIAL_SECRET.as_bytes(), &msg, want));
    }
    assert_eq!(
        sign::message(
            "GET",
            "/v2/zone",
            b"",
            &[("k2", "v2"), ("k1", "v1")],
            EXPIRES_2077
        ),
        b"GET /v2/zone\n\nv1v2\n\n3376684800"
    );
    let header = sign::authorization(
        OFFICIAL_KEY,
        OFFICIAL_SECRET.as_bytes(),
        "GET",
        "/v2/zone",
        b"",
        &[("k1", "v1"), ("k2", "v2")],
        EXPIRES_2077,
    );
    assert_eq!(
        header,
        "EXO2-HMAC-SHA256 credential=EXOxxxxxxxxxxxxxxxxxxxxxxxx,signed-query-args=k1;k2,expires=3376684800,signature=iqOBz13+44L5j0uJclE8hmUhQQcvtCSoPEOXYK6liqY="
    );
}

const KEY: &str = "EXO0123456789abcdef01234567";
const SECRET: &[u8] = b"forge-test-secret-0123456789abcdefghijklmn";

#[test]
fn forge_vectors() {
    let body = br#"{"name":"forge-node","url":"https://sos-ch-gva-2.exo.io/forge/img.qcow2","checksum":"d41d8cd98f00b204e9800998ecf8427e"}"#;
    assert_eq!(
        sign::authorization(
            KEY,
            SECRET,
            "POST",
            "/v2/template",
            body,
            &[],
            1_700_000_000
        ),
        "EXO2-HMAC-SHA256 credential=EXO0123456789abcdef01234567,expires=1700000000,signature=3OU468D0QH57v2RnzF03LMAGwwvnFVJTv32kacGKEKU="
    );
    let q = [
        ("manager-type", "instance-pool"),
        ("manager-id", "8b9d4f1c-1111-4222-8333-444455556666"),
    ];
    assert_eq!(
        sign::message("GET", "/v2/instance", b"", &q, 1_700_000_000),
        b"GET /v2/instance\n\n8b9d4f1c-1111-4222-8333-444455556666instance-pool\n\n1700000000"
    );
    assert_eq!(
        sign::authorization(KEY, SECRET, "GET", "/v2/instance", b"", &q, 1_700_000_000),
        "EXO2-HMAC-SHA256 credential=EXO0123456789abcdef01234567,signed-query-args=manager-id;manager-type,expires=1700000000,signature=LC3Pd+nln+PPt5Y0nEjGZTo7hs8r1VReJMW6zB8k2B4="
    );
    let h = sign::authorization(
        KEY,
        SECRET,
        "DELETE",
        "/v2/template/6e5a1c5e-0b1f-4a59-9a2e-2a7f6c3b9d10",
        b"",
        &[],
        1_700_000_000,
    );
    assert!(
        h.ends_with(",expires=1700000000,signature=MPPbqw7xFHLfqoaO5SPqcC4Qi6jxv81AJdaj/wM2CEA="),
        "{h}"
    );
}

#[test]
fn headers_parse_back_and_tampering_fails() {
    let q = [("manager-id", "a"), ("manager-type", "instance-pool")];
    let h = sign::authorization(KEY, SECRET, "GET", "/v2/instance", b"", &q, 1_700_000_000);
    let p = sign::parse_authorization(&h).unwrap_or_else(|| panic!("parse {h}"));
    assert_eq!(p.credential, KEY);
    assert_eq!(p.signed_query_args, ["manager-id", "manager-type"]);
    assert_eq!(p.expires, 1_700_000_000);
    let good = sign::message("GET", "/v2/instance", b"", &q, 1_700_000_000);
    assert!(sign::verify(SECRET, &good, &p.signature));
    let tampered = sign::message(
        "GET",
        "/v2/instance",
        b"",
        &[("manager-id", "b"), ("manager-type", "instance-pool")],
        1_700_000_000,
    );
    assert!(!sign::verify(SECRET, &tampered, &p.signature));
    assert!(!sign::verify(b"other secret", &good, &p.signature));
    assert!(!sign::verify(SECRET, &good, "not base64!"));
    assert!(sign::parse_authorization("Bearer x").is_none());
    assert!(
        sign::parse_authorization("EXO2-HMAC-SHA256 credential=k,expires=soon,signature=x")
            .is_none()
    );
}

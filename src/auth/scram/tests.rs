//! SCRAM tests: RFC 7677 vectors, round trips, pass-through, PostgreSQL-made secrets and
//! hostile messages.

use super::*;

const C_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const S_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// Made by PostgreSQL 15: `CREATE ROLE u1 PASSWORD 'pencil'` (scram-sha-256).
const PG_PENCIL: &str = "SCRAM-SHA-256$4096:183VBnlw0YKVB4MakdALBA==$\
    J2rZRaYsMjOuihYLqWExAn0ArqSpIdSNQjWuOvPenqA=:DJbNyRCkpUcvAfX0NhNTpPpCuwK9HN9THY9Da1YL2fA=";
/// Made by PostgreSQL 15: `CREATE ROLE u2 PASSWORD U&'I\00ADX'` (a soft hyphen, which
/// SASLprep removes).
const PG_SOFT_HYPHEN: &str = "SCRAM-SHA-256$4096:mmmbG7Ek5Y4JMUXTXVUw1w==$\
    xV+KjdXDTuIZrMvaSgUf2j5nDYhpW8qDKjP2BXrUAN0=:H5ksMdZ7mdhDwui4x5X2cMHjJQjg2gGudMEMCUnHHVk=";

fn rfc_secret() -> ScramSecret {
    scram_secret(
        "pencil",
        &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
        4096,
    )
}

fn exchange(client: &mut ScramClient, server: &mut ScramServer) -> Result<(), AuthError> {
    let first = client.client_first();
    let server_first = server.client_first(&first)?;
    let client_final = client.handle_server_first(&server_first)?;
    let server_final = server.client_final(&client_final)?;
    client.handle_server_final(&server_final)
}

/// A server at the point where it waits for client-final, and the nonce it expects.
fn server_after_first(first: &str) -> (ScramServer, String) {
    let mut server = ScramServer::with_nonce(scram_secret("pw", b"salt", 2), "SN".into());
    let reply = server.client_first(first.as_bytes()).unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let nonce = reply.split(',').next().unwrap()[2..].to_owned();
    (server, nonce)
}

#[test]
fn rfc7677_server_side() {
    let mut server = ScramServer::with_nonce(rfc_secret(), S_NONCE.into());
    assert_eq!(
        server.client_first(CLIENT_FIRST.as_bytes()).unwrap(),
        SERVER_FIRST.as_bytes()
    );
    assert_eq!(server.client_key(), None);
    assert_eq!(
        server.client_final(CLIENT_FINAL.as_bytes()).unwrap(),
        SERVER_FINAL.as_bytes()
    );
    let (client_key, _) = password_keys("pencil", &rfc_secret().salt, 4096);
    assert_eq!(server.client_key(), Some(client_key));
}

#[test]
fn rfc7677_client_side() {
    let mut client = ScramClient::for_test("pencil", "user", C_NONCE);
    assert_eq!(client.client_first(), CLIENT_FIRST.as_bytes());
    let client_final = client.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(client_final, CLIENT_FINAL.as_bytes());
    assert!(!client.is_done());
    client.handle_server_final(SERVER_FINAL.as_bytes()).unwrap();
    assert!(client.is_done());
}

#[test]
fn round_trip_with_plain_password() {
    let mut server = ScramServer::from_password("correct horse");
    let mut client = ScramClient::new("correct horse");
    exchange(&mut client, &mut server).unwrap();
    assert!(client.is_done());
    let secret = server.secret();
    assert_eq!(secret.iterations, DEFAULT_ITERATIONS);
    assert_eq!(secret.salt.len(), 16);
    let (client_key, _) = password_keys("correct horse", &secret.salt, secret.iterations);
    assert_eq!(
        server.client_key(),
        Some(client_key),
        "recovered ClientKey is the real one"
    );
    assert!(ScramServer::for_secret(&Secret::Plain("x".into())).is_ok());
}

#[test]
fn round_trip_with_stored_secret() {
    let secret = scram_secret("s3cret", b"0123456789abcdef", 32);
    let mut server = ScramServer::for_secret(&Secret::Scram(secret.clone())).unwrap();
    let mut client = ScramClient::new("s3cret");
    exchange(&mut client, &mut server).unwrap();
    let (client_key, _) = password_keys("s3cret", &secret.salt, 32);
    assert_eq!(server.client_key(), Some(client_key));
    assert_eq!(
        ScramServer::for_secret(&Secret::Md5("md5".into())).err(),
        Some(AuthError::Md5SecretForScram)
    );
}

#[test]
fn wrong_password_fails_and_ends_the_exchange() {
    let mut server = ScramServer::new(&scram_secret("right", b"salt", 16));
    let mut client = ScramClient::new("wrong");
    assert_eq!(
        exchange(&mut client, &mut server),
        Err(AuthError::AuthenticationFailed)
    );
    assert_eq!(server.client_key(), None);
    assert!(!client.is_done());
    assert_eq!(server.client_final(b"c=biws"), Err(AuthError::OutOfOrder));
    assert_eq!(
        server.client_first(b"n,,n=,r=x"),
        Err(AuthError::OutOfOrder)
    );
}

#[test]
fn pass_through_with_recovered_client_key() {
    let secret = scram_secret("app password", b"pgsalt", 64);
    // The client logs in to the pooler...
    let mut pooler = ScramServer::new(&secret);
    exchange(&mut ScramClient::new("app password"), &mut pooler).unwrap();
    let client_key = pooler.client_key().unwrap();
    // ...and the pooler logs in to a server holding the same secret with that key.
    let mut backend = ScramServer::new(&secret);
    let mut pass = ScramClient::from_client_key(client_key, secret.server_key);
    exchange(&mut pass, &mut backend).unwrap();
    assert!(pass.is_done());
    // A server holding another secret for the same password rejects it.
    let mut other = ScramServer::new(&scram_secret("app password", b"other", 64));
    let mut pass = ScramClient::from_client_key(client_key, secret.server_key);
    assert_eq!(
        exchange(&mut pass, &mut other),
        Err(AuthError::AuthenticationFailed)
    );
}

#[test]
fn secrets_made_by_postgresql() {
    let secret = ScramSecret::parse(PG_PENCIL).unwrap();
    assert_eq!(secret.iterations, 4096);
    assert_eq!(secret.to_string(), PG_PENCIL);
    assert!(secret.verify_password("pencil"));
    assert!(!secret.verify_password("Pencil"));
    assert_eq!(scram_secret("pencil", &secret.salt, 4096), secret);
    let mut server = ScramServer::new(&secret);
    exchange(&mut ScramClient::new("pencil"), &mut server).unwrap();

    let hyphen: ScramSecret = PG_SOFT_HYPHEN.parse().unwrap();
    assert!(hyphen.verify_password("I\u{ad}X"));
    assert!(
        hyphen.verify_password("IX"),
        "SASLprep maps the soft hyphen to nothing"
    );
    assert!(!hyphen.verify_password("I-X"));
}

#[test]
fn generated_secret_text_form_parses_back() {
    let secret = ScramSecret::generate("pw");
    let text = secret.to_string();
    assert!(text.starts_with("SCRAM-SHA-256$4096:"));
    assert_eq!(ScramSecret::parse(&text).unwrap(), secret);
    assert_eq!(Secret::parse(&text), Secret::Scram(secret.clone()));
    assert!(secret.verify_password("pw"));
    // SASLprep failure (a prohibited control character) falls back to the raw password.
    let raw = scram_secret("a\u{7}b", b"salt", 8);
    assert!(raw.verify_password("a\u{7}b"));
    assert!(!raw.verify_password("ab"));
}

#[test]
fn malformed_secrets_are_rejected() {
    let key = B64.encode([0u8; 32]);
    let ok = format!("SCRAM-SHA-256$10:c2FsdA==${key}:{key}");
    assert!(ScramSecret::parse(&ok).is_ok());
    for bad in [
        String::new(),
        format!("SCRAM-SHA-1$10:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$-1:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$x:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$10:${key}:{key}"),
        format!("SCRAM-SHA-256$10:!!!${key}:{key}"),
        format!("SCRAM-SHA-256$10:c2FsdA==${key}"),
        format!("SCRAM-SHA-256$10:c2FsdA==$c2FsdA==:{key}"),
        format!("SCRAM-SHA-256$10c2FsdA==${key}:{key}"),
        "SCRAM-SHA-256$10:c2FsdA==".to_owned(),
    ] {
        assert!(ScramSecret::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn server_rejects_bad_client_first() {
    let cases: [(&str, AuthError); 8] = [
        (
            "p=tls-server-end-point,,n=,r=abc",
            AuthError::ChannelBindingUnsupported,
        ),
        (
            "n,a=admin,n=,r=abc",
            AuthError::Unsupported("authorization identity"),
        ),
        (
            "n,,m=ext,n=,r=abc",
            AuthError::Unsupported("mandatory extension"),
        ),
        (
            "x,,n=,r=abc",
            AuthError::Malformed("GS2 channel binding flag"),
        ),
        ("n,,n=,r=", AuthError::Malformed("nonce")),
        ("n,,n=,r=a b", AuthError::Malformed("nonce")),
        ("n,,r=abc", AuthError::Malformed("username")),
        ("n,,", AuthError::Malformed("username")),
    ];
    for (msg, err) in cases {
        let mut server = ScramServer::new(&scram_secret("pw", b"s", 1));
        assert_eq!(server.client_first(msg.as_bytes()), Err(err), "{msg}");
    }
    let mut server = ScramServer::new(&scram_secret("pw", b"s", 1));
    assert!(server.client_first(b"\xff").is_err());
    let mut server = ScramServer::new(&scram_secret("pw", b"s", 1));
    assert!(server.client_first(b"n").is_err());
    let mut server = ScramServer::new(&scram_secret("pw", b"s", 1));
    assert!(
        server.client_first(b"n,,n=,r=abc,x=ext").is_ok(),
        "optional extensions"
    );
}

#[test]
fn server_checks_client_final() {
    let proof = B64.encode([0u8; 32]);
    let (mut server, nonce) = server_after_first("n,,n=,r=CN");
    assert_eq!(nonce, "CNSN");
    let msg = format!("c=biws,r=CNxx,p={proof}");
    assert_eq!(
        server.client_final(msg.as_bytes()),
        Err(AuthError::NonceMismatch)
    );

    let (mut server, nonce) = server_after_first("n,,n=,r=CN");
    let msg = format!("c=eSws,r={nonce},p={proof}");
    assert!(matches!(
        server.client_final(msg.as_bytes()),
        Err(AuthError::Malformed(_))
    ));

    let (mut server, nonce) = server_after_first("n,,n=,r=CN");
    let msg = format!("c=biws,r={nonce},p=AAAA");
    assert_eq!(
        server.client_final(msg.as_bytes()),
        Err(AuthError::Malformed("proof"))
    );

    let (mut server, nonce) = server_after_first("n,,n=,r=CN");
    let msg = format!("c=biws,r={nonce}");
    assert!(server.client_final(msg.as_bytes()).is_err());

    let (mut server, nonce) = server_after_first("n,,n=,r=CN");
    let msg = format!("c=biws,r={nonce},p={proof}");
    assert_eq!(
        server.client_final(msg.as_bytes()),
        Err(AuthError::AuthenticationFailed)
    );
}

#[test]
fn server_accepts_y_flag() {
    let secret = scram_secret("pw", b"salt", 4);
    let mut server = ScramServer::new(&secret);
    let server_first = server.client_first(b"y,,n=,r=CN").unwrap();
    let server_first = String::from_utf8(server_first).unwrap();
    let nonce = &server_first.split(',').next().unwrap()[2..];
    let without_proof = format!("c=eSws,r={nonce}");
    let (client_key, _) = password_keys("pw", b"salt", 4);
    let auth_message = format!("n=,r=CN,{server_first},{without_proof}");
    let signature = hmac(&secret.stored_key, &[auth_message.as_bytes()]);
    let proof = B64.encode(xor(&client_key, &signature));
    let reply = server
        .client_final(format!("{without_proof},p={proof}").as_bytes())
        .unwrap();
    assert!(reply.starts_with(b"v="));
    assert_eq!(server.client_key(), Some(client_key));
}

#[test]
fn client_rejects_bad_server_messages() {
    let server_first = |msg: &str| {
        let mut client = ScramClient::for_test("pw", "", "CN");
        let _ = client.client_first();
        client.handle_server_first(msg.as_bytes())
    };
    assert_eq!(
        server_first("r=CNSN,s=c2FsdA==,i=0"),
        Err(AuthError::InvalidIterations)
    );
    assert_eq!(
        server_first("r=CNSN,s=c2FsdA==,i=-1"),
        Err(AuthError::InvalidIterations)
    );
    assert_eq!(
        server_first("r=XXSN,s=c2FsdA==,i=1"),
        Err(AuthError::NonceMismatch)
    );
    assert_eq!(
        server_first("r=CN,s=c2FsdA==,i=1"),
        Err(AuthError::NonceMismatch)
    );
    assert_eq!(
        server_first("r=C,s=c2FsdA==,i=1"),
        Err(AuthError::NonceMismatch)
    );
    assert_eq!(
        server_first("r=CNSN,s=!,i=1"),
        Err(AuthError::Malformed("salt"))
    );
    assert_eq!(
        server_first("r=CNSN,i=1"),
        Err(AuthError::Malformed("salt"))
    );
    assert!(matches!(
        server_first("m=x,r=CNSN,s=c2FsdA==,i=1"),
        Err(AuthError::Unsupported(_))
    ));
    assert!(server_first("r=CNSN,s=c2FsdA==,i=1,x=ext").is_ok());

    let mut client = ScramClient::for_test("pw", "", "CN");
    assert_eq!(
        client.handle_server_first(b"r=CNSN,s=c2FsdA==,i=1"),
        Err(AuthError::OutOfOrder)
    );

    let server_final = |msg: &str| {
        let mut client = ScramClient::for_test("pw", "", "CN");
        let _ = client.client_first();
        client
            .handle_server_first(b"r=CNSN,s=c2FsdA==,i=1")
            .unwrap();
        client.handle_server_final(msg.as_bytes())
    };
    assert_eq!(
        server_final("e=invalid-proof"),
        Err(AuthError::ServerError("invalid-proof".into()))
    );
    let zeros = format!("v={}", B64.encode([0u8; 32]));
    assert_eq!(
        server_final(&zeros),
        Err(AuthError::ServerSignatureMismatch)
    );
    assert_eq!(
        server_final("v=AAAA"),
        Err(AuthError::Malformed("verifier"))
    );
    assert_eq!(server_final("x=1"), Err(AuthError::Malformed("verifier")));
}

#[test]
fn client_detects_a_server_without_the_secret() {
    // A server that accepts any proof but does not know ServerKey cannot sign.
    let secret = scram_secret("pw", b"salt", 4);
    let mut client = ScramClient::new("pw");
    let mut server = ScramServer::new(&secret);
    let first = client.client_first();
    let client_final = client
        .handle_server_first(&server.client_first(&first).unwrap())
        .unwrap();
    server.secret.server_key = [7; 32];
    let server_final = server.client_final(&client_final).unwrap();
    assert_eq!(
        client.handle_server_final(&server_final),
        Err(AuthError::ServerSignatureMismatch)
    );
}

#[test]
fn mock_server_is_stable_and_never_accepts() {
    let key = [42u8; 32];
    let salt_of = |user: &str| ScramServer::mock(user, &key).secret().salt.clone();
    assert_eq!(salt_of("ghost"), salt_of("ghost"));
    assert_ne!(salt_of("ghost"), salt_of("phantom"));
    assert_eq!(salt_of("ghost").len(), 16);
    let mut server = ScramServer::mock("ghost", &key);
    assert_eq!(
        exchange(&mut ScramClient::new(""), &mut server),
        Err(AuthError::AuthenticationFailed)
    );
}

#[test]
fn debug_hides_keys() {
    let secret = scram_secret("pw", b"salt", 4);
    let stored = B64.encode(secret.stored_key);
    for shown in [
        format!("{secret:?}"),
        format!("{:?}", ScramServer::new(&secret)),
        format!("{:?}", ScramClient::new("pw")),
    ] {
        assert!(
            !shown.contains(&stored) && !shown.contains("\"pw\""),
            "{shown}"
        );
    }
}

//! TLS to PostgreSQL through the real binary, against a private server with TLS on and a
//! certificate for `localhost` signed by a CA of the test's own: each `sslmode` encrypts
//! when it says so and checks what it says it checks, and a wrong setting stops the process
//! with a message that names it.

#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use common::private_pg::PrivatePostgres;
use common::{Options, TestApp, run_to_exit};

const WAIT: Duration = Duration::from_secs(60);

/// `todo migrate` against `url`: whether it succeeded, and its output.
async fn migrate(url: &str) -> (bool, String) {
    migrate_with(url, &[]).await
}

async fn migrate_with(url: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut all = vec![("DATABASE_URL", url)];
    all.extend_from_slice(env);
    let out = run_to_exit(&["migrate"], &all, WAIT).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Whether the server sees this process's connections as encrypted: a served request
/// through a running platform, then the server's own view of its clients.
async fn encrypted_clients(pg: &PrivatePostgres, url: &str) -> (i64, i64) {
    let app = TestApp::spawn_with(
        Options::default()
            .env("DATABASE_URL", url)
            .env("TODO_BUS", "memory"),
    )
    .await;
    let user = app.user("tls");
    let id = app.create_titled(&user, "over TLS").await;
    assert!(
        app.get_task(&user, &id).await.is_some(),
        "read back over TLS"
    );
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to look");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'todo'",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn require_and_verify_full_encrypt_every_connection_of_the_platform() {
    let pg = PrivatePostgres::start_with_tls().await;
    let (tls, plain) = encrypted_clients(&pg, &format!("{}?sslmode=require", pg.url())).await;
    assert!(
        tls > 0 && plain == 0,
        "require: {tls} encrypted, {plain} plain"
    );
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url_by_name(),
        pg.ca_file().display()
    );
    let (tls, plain) = encrypted_clients(&pg, &verified).await;
    assert!(
        tls > 0 && plain == 0,
        "verify-full: {tls} encrypted, {plain} plain"
    );
    // Without sslmode the connection stays plain TCP, as before.
    let (tls, plain) = encrypted_clients(&pg, &pg.url()).await;
    assert!(
        tls == 0 && plain > 0,
        "no sslmode: {tls} encrypted, {plain} plain"
    );
}

#[tokio::test]
async fn each_mode_checks_what_it_promises() {
    let pg = PrivatePostgres::start_with_tls().await;
    let ca = pg.ca_file().display().to_string();
    let by_ip = pg.url();
    let by_name = pg.url_by_name();
    let cases = [
        // The CA and the name both match.
        (
            format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"),
            true,
        ),
        // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca
        // (chain only) accepts.
        (
            format!("{by_ip}?sslmode=verify-full&sslrootcert={ca}"),
            false,
        ),
        (format!("{by_ip}?sslmode=verify-ca&sslrootcert={ca}"), true),
        // A private CA is not among the bundled public roots.
        (format!("{by_name}?sslmode=verify-full"), false),
        (
            format!("{by_name}?sslmode=verify-ca&sslrootcert=system"),
            false,
        ),
        // require and prefer encrypt without checking the certificate (libpq's meaning).
        (format!("{by_ip}?sslmode=require"), true),
        (format!("{by_ip}?sslmode=prefer"), true),
    ];
    for (url, ok) in cases {
        let (succeeded, output) = migrate(&url).await;
        assert_eq!(succeeded, ok, "{url}:\n{output}");
        if !ok {
            assert!(
                output.contains("certificate") || output.contains("Certificate"),
                "{url}: the refusal should say it is the certificate:\n{output}"
            );
        }
    }
    // The CA may come from a mounted file named by TODO_DATABASE_CA_FILE instead.
    let env = [("TODO_DATABASE_CA_FILE", ca.as_str())];
    let (ok, output) = migrate_with(&format!("{by_name}?sslmode=verify-full"), &env).await;
    assert!(ok, "verify-full with TODO_DATABASE_CA_FILE:\n{output}");
    let (ok, output) = migrate_with(&format!("{by_ip}?sslmode=verify-full"), &env).await;
    assert!(!ok, "the name is still checked:\n{output}");
}

#[tokio::test]
async fn a_server_without_tls_is_refused_by_require_and_taken_by_prefer() {
    let pg = PrivatePostgres::start().await;
    let (ok, output) = migrate(&format!("{}?sslmode=require", pg.url())).await;
    assert!(
        !ok,
        "require against a server without TLS must fail:\n{output}"
    );
    let (ok, output) = migrate(&format!("{}?sslmode=prefer", pg.url())).await;
    assert!(ok, "prefer falls back to plain TCP:\n{output}");
}

#[tokio::test]
async fn wrong_tls_settings_stop_the_process_naming_them() {
    for (query, expected) in [
        ("sslmode=allow", "sslmode must be"),
        (
            "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
    ] {
        let url = format!("postgres://postgres@127.0.0.1:5432/test?{query}");
        let (ok, output) = migrate(&url).await;
        assert!(!ok, "{query} must be refused");
        assert!(output.contains(expected), "{query}: {output}");
    }
}

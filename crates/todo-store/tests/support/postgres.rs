//! A fresh PostgreSQL schema for one test, dropped when its guard drops, even when the test
//! panics. The server is `TODO_TEST_DATABASE_URL`, or the machine's PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/test`; when it cannot be reached the test fails,
//! loudly, rather than being skipped.

#![allow(dead_code)]

/// The server tests use when `TODO_TEST_DATABASE_URL` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server tests use.
pub fn server_url() -> String {
    std::env::var("TODO_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// One connection to the test server, outside any test schema.
pub async fn admin() -> tokio_postgres::Client {
    let url = server_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test PostgreSQL at {url} (set TODO_TEST_DATABASE_URL to \
                 another server): {e}"
            )
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A schema of its own; see the module docs.
#[derive(Debug)]
pub struct Schema {
    /// Its name (unquoted; lower-case letters, digits and underscores only).
    pub name: String,
}

impl Schema {
    /// Creates an empty schema with a fresh name.
    pub async fn create() -> Schema {
        let name = format!("todo_test_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create schema {name}: {e}"));
        Schema { name }
    }

    /// A `DATABASE_URL` whose connections work in this schema only.
    pub fn url(&self) -> String {
        let server = server_url();
        let sep = if server.contains('?') { '&' } else { '?' };
        format!("{server}{sep}options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
        // with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test schema {}: the thread panicked",
                self.name
            ),
        }
    }
}

/// A `DATABASE_URL` for an empty schema, and the guard that drops it.
pub async fn fresh_database() -> (String, Schema) {
    let schema = Schema::create().await;
    (schema.url(), schema)
}

/// A database of its own on the test server, dropped when its guard drops: for a test that
/// must not share its database with others (transactions of other tests in the same
/// database can hold back its reads).
#[derive(Debug)]
pub struct Database {
    /// Its name (lower-case letters, digits and underscores only).
    pub name: String,
}

impl Database {
    /// Creates an empty database with a fresh name.
    pub async fn create() -> Database {
        let name = format!("todo_test_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        Database { name }
    }

    /// A `DATABASE_URL` for it: the test server's URL with its database name replaced.
    pub fn url(&self) -> String {
        with_database(&server_url(), &self.name)
    }
}

/// `url` (libpq form, `postgres://...`) naming the database `name` instead.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.split_once("://") {
        Some((_, rest)) if rest.contains('/') => &base[..base.rfind('/').unwrap_or(base.len())],
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // As for `Schema`: a thread with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

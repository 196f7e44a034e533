//! A request described as data: what to send, to whom, with which credentials, what it
//! costs, how often it may be tried, and what it is for (the messages name it). Built by the
//! resources, sent by [`super::Pipeline::send`] and nothing else.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::super::auth::credentials::RegistryCredential;
use super::super::auth::{Access, Authorization};
use super::super::control::CostClass;
use super::idle::Activity;
use crate::retry::Budget;

/// One request to send (and, within its [`Tries`], to send again).
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub class: CostClass,
    /// What the request is for, as messages say it: "reading manifest quay.io/a:1".
    pub what: &'a str,
    pub auth: Auth<'a>,
    pub connection: Connection,
    pub headers: HeaderMap,
    pub body: Body,
    pub tries: Tries<'a>,
    /// The longest the whole request may take (the client's own timeouts otherwise).
    pub timeout: Option<Duration>,
    /// The name its count goes under, when that is not the registry's (Docker Hub's
    /// account API).
    pub counted_as: Option<&'a str>,
    /// The registry's first contact (`GET /v2/`): nothing of it has answered yet, so a
    /// refused connection is final (see [`super::classify`]).
    pub first_contact: bool,
    /// A streamed upload's body, watched: the request fails when the registry keeps it
    /// idle, not when it takes long (see [`super::idle`]).
    pub activity: Option<Activity>,
}

/// Which credentials the request carries.
pub enum Auth<'a> {
    /// None: the first contact, probes, public APIs.
    None,
    /// The registry's, for `access`: the auth file's credential for the repository (or
    /// `credential`, the one an upload session was opened with), as the challenge asks;
    /// put on the request only when it goes to the registry itself, and renewed once on a
    /// 401 from it.
    Registry {
        access: &'a Access,
        credential: Option<&'a RegistryCredential>,
    },
    /// Exactly these, wherever the request goes: a token service's basic credentials, an
    /// account API's bearer token.
    Given(Authorization),
}

/// Which of the registry's two connections the request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/2 where the registry offers it: checks, manifests, lists share it.
    Shared,
    /// HTTP/1.1, a connection each: blob bodies, the first contact, tokens.
    Bulk,
}

/// What the request carries.
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `application/x-www-form-urlencoded` pairs.
    Form(Vec<(String, String)>),
    /// A stream, which can be sent only once (see [`Tries::Once`]).
    Stream(Mutex<Option<reqwest::Body>>),
}

/// How often the request may be sent.
#[derive(Clone, Copy)]
pub enum Tries<'a> {
    /// Retried within a budget of its own, from the registry's policy.
    Fresh,
    /// Retried within the budget of a larger operation (a blob copy).
    Within(&'a Budget),
    /// Sent once: no retry and no second try after a 401 (a streamed body, a probe, a
    /// best-effort cancel); the caller judges whatever came back.
    Once,
}

impl<'a> Request<'a> {
    /// A request without credentials or body, over the shared connection, retried within a
    /// budget of its own.
    pub fn new(method: Method, url: Url, class: CostClass, what: &'a str) -> Request<'a> {
        Request {
            method,
            url,
            class,
            what,
            auth: Auth::None,
            connection: Connection::Shared,
            headers: HeaderMap::new(),
            body: Body::Empty,
            tries: Tries::Fresh,
            timeout: None,
            counted_as: None,
            first_contact: false,
            activity: None,
        }
    }

    /// With the registry's credentials for `access`.
    pub fn access(mut self, access: &'a Access) -> Self {
        self.auth = Auth::Registry {
            access,
            credential: None,
        };
        self
    }

    /// With the registry's credentials for `access`, as `credential` holds them.
    pub fn access_as(mut self, access: &'a Access, credential: &'a RegistryCredential) -> Self {
        self.auth = Auth::Registry {
            access,
            credential: Some(credential),
        };
        self
    }

    /// With exactly these credentials.
    pub fn given(mut self, authorization: Authorization) -> Self {
        self.auth = Auth::Given(authorization);
        self
    }

    pub fn bulk(mut self) -> Self {
        self.connection = Connection::Bulk;
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// A streamed body: sent once.
    pub fn stream(mut self, body: reqwest::Body) -> Self {
        self.body = Body::Stream(Mutex::new(Some(body)));
        self.tries = Tries::Once;
        self
    }

    /// A blob's bytes streamed to the registry: sent once, on a connection without the
    /// client's read timeout, failing instead when the registry keeps `body` idle for
    /// `--read-timeout` (see [`super::idle`]).
    pub fn upload<S>(mut self, body: S) -> Self
    where
        S: futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
    {
        let activity = Activity::default();
        self = self.stream(reqwest::Body::wrap_stream(activity.watch(body)));
        self.activity = Some(activity);
        self
    }

    pub fn within(mut self, budget: &'a Budget) -> Self {
        self.tries = Tries::Within(budget);
        self
    }

    pub fn once(mut self) -> Self {
        self.tries = Tries::Once;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The registry's first contact: a refused connection is not tried again.
    pub fn first_contact(mut self) -> Self {
        self.first_contact = true;
        self
    }

    pub fn counted_as(mut self, name: &'a str) -> Self {
        self.counted_as = Some(name);
        self
    }
}

/// A header value from a number.
pub fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

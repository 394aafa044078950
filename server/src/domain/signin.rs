//! `auth.login`, `auth.me`, `auth.logout`: signing in with the cloud's Keystone, who is
//! signed in, signing out. The sessions themselves are [`crate::auth`]'s; the wire layer
//! turns a [`SignedIn`] into the session cookie and a [`SignedOut`] into its removal.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use super::types::{MAX_ID, MAX_NAME};
use super::{Ctx, Error};
use crate::auth::{Session, SignInError};

/// The longest password accepted: Keystone's own limit is far lower in practice, this
/// keeps a huge body from being sent on to it.
pub const MAX_PASSWORD: usize = 4096;

/// Input of `auth.login`. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginInput {
    /// The Keystone user name. At most 255 characters.
    #[schema(example = "alice", max_length = 255)]
    pub user: String,
    /// At most 4096 characters.
    #[schema(example = "alice", max_length = 4096, format = Password)]
    pub password: String,
    /// The user's domain, by name; the default domain when absent. At most 64 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "Default", max_length = 64)]
    pub domain: Option<String>,
}

impl std::fmt::Debug for LoginInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginInput").field("user", &self.user).field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl LoginInput {
    pub fn validate(&self) -> Result<(), Error> {
        let blank = |s: &str| s.trim().is_empty() || s.chars().any(char::is_control);
        if self.user.chars().count() > MAX_NAME {
            return Err(Error::invalid("user", format!("at most {MAX_NAME} characters")));
        }
        if blank(&self.user) {
            return Err(Error::invalid("user", "must not be blank or contain control characters"));
        }
        if self.password.chars().count() > MAX_PASSWORD {
            return Err(Error::invalid("password", format!("at most {MAX_PASSWORD} characters")));
        }
        if self.password.is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        if let Some(domain) = &self.domain {
            if domain.chars().count() > MAX_ID {
                return Err(Error::invalid("domain", format!("at most {MAX_ID} characters")));
            }
            if blank(domain) {
                return Err(Error::invalid("domain", "must not be blank or contain control characters"));
            }
        }
        Ok(())
    }
}

/// Who is signed in (`auth.me`, and `auth.login`'s answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub user: SignedInUser,
    /// The projects the user has a role on, by name.
    pub projects: Vec<ProjectAccess>,
    /// When the session ends at the latest, in milliseconds since the Unix epoch (it ends
    /// sooner after `idleTimeoutMs` without a request).
    #[ts(type = "number")]
    pub expires_at: u64,
    #[ts(type = "number")]
    pub idle_timeout_ms: u64,
}

/// The signed-in user, as Keystone knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedInUser {
    pub id: String,
    pub name: String,
    /// The name of their domain.
    pub domain: String,
}

/// The user's part in one project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectAccess {
    pub id: String,
    pub name: String,
    /// Their roles there, implied ones included (`member` also says `reader`).
    pub roles: Vec<String>,
    /// Whether they may create, change and delete things there (any role but `reader`).
    pub can_write: bool,
}

/// What `auth.login` did: the new session (whose id only the wire layer sends, in the
/// cookie) and who it is for.
#[derive(Debug)]
pub struct SignedIn {
    pub session: Arc<Session>,
    pub me: Me,
}

/// What `auth.logout` answers: whose session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedOut {
    pub user: String,
}

/// What `auth.logout` did: the wire layer answers the [`SignedOut`] and clears the cookie.
#[derive(Debug)]
pub struct SignOut(pub SignedOut);

/// Who `session` is for, as the dashboard shows it.
pub fn me_of(session: &Session) -> Me {
    let user = session.user();
    let memberships = session.memberships();
    let mut projects: Vec<ProjectAccess> = memberships
        .projects
        .iter()
        .map(|m| ProjectAccess {
            id: m.project.id.clone(),
            name: m.project.name.clone(),
            roles: m.roles.clone(),
            can_write: m.may_write(),
        })
        .collect();
    projects.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Me {
        user: SignedInUser { id: user.id.clone(), name: user.name.clone(), domain: user.domain.clone() },
        projects,
        expires_at: session.ends_at().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        idle_timeout_ms: session.idle_timeout().as_millis() as u64,
    }
}

/// Signs the user in at Keystone; a session the request came with ends first (a sign-in
/// always starts a new session, with a new id).
pub async fn login(ctx: &Ctx, input: LoginInput) -> Result<SignedIn, Error> {
    input.validate()?;
    if let Some(previous) = &ctx.caller {
        ctx.sessions.sign_out(previous).await;
    }
    let signed = ctx.sessions.sign_in(&input.user, &input.password, input.domain.as_deref(), ctx.peer).await;
    match signed {
        Ok(session) => Ok(SignedIn { me: me_of(&session), session }),
        Err(SignInError::Refused) => Err(Error::Unauthorized("the user name, password or domain is not right".into())),
        Err(SignInError::Limited(wait)) => Err(Error::SignInLimited(wait)),
        Err(SignInError::Upstream(e)) => Err(e.into()),
        Err(SignInError::Internal(detail)) => Err(Error::Internal(detail)),
        Err(SignInError::Unavailable(detail)) => Err(Error::SignInUnavailable(detail)),
    }
}

/// Who is signed in.
pub fn me(ctx: &Ctx) -> Result<Me, Error> {
    Ok(me_of(ctx.caller()?))
}

/// Ends the caller's session: every stream of it ends, and its Keystone tokens are
/// revoked before this answers.
pub async fn logout(ctx: &Ctx) -> Result<SignOut, Error> {
    let session = ctx.caller()?;
    ctx.sessions.sign_out(session).await;
    Ok(SignOut(SignedOut { user: session.user().name.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: &str, password: &str, domain: Option<&str>) -> LoginInput {
        LoginInput { user: user.into(), password: password.into(), domain: domain.map(str::to_owned) }
    }

    #[test]
    fn bad_input_names_its_field_and_debug_hides_the_password() {
        assert_eq!(input("alice", "pw", None).validate(), Ok(()));
        assert_eq!(
            input(" ", "pw", None).validate(),
            Err(Error::invalid("user", "must not be blank or contain control characters"))
        );
        assert_eq!(input("alice", "", None).validate(), Err(Error::invalid("password", "must not be empty")));
        let long = "p".repeat(MAX_PASSWORD + 1);
        assert_eq!(input("alice", &long, None).validate(), Err(Error::invalid("password", "at most 4096 characters")));
        assert!(matches!(input("alice", "pw", Some("")).validate(), Err(Error::Invalid { field: "domain", .. })));
        let shown = format!("{:?}", input("alice", "s3cret-pw", Some("Default")));
        assert!(shown.contains("alice") && !shown.contains("s3cret"), "{shown}");
    }
}

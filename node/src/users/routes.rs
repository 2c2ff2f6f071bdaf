//! HTTP handlers for users and authentication.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AuthUser;
use super::model::{Email, Name, NewPassword, Role, UserView};
use super::store::{self, NewUser, ProfileChange};
use crate::error::{Error, Problem, Result};
use crate::events::{self, Event};
use crate::http::extract::{ApiJson, ApiQuery, PathId};
use crate::http::page::{Page, PageParams, PageRequest};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list_users))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(change_password))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(example = "Ann")]
    pub name: String,
    /// 8-128 characters, not a common password.
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthResponse {
    pub user: UserView,
    /// A bearer token (JWT, HS256) for the `Authorization` header.
    pub token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateUserRequest {
    pub name: Option<String>,
    pub email: Option<String>,
    /// Admins only; anyone else sending it gets 403.
    pub role: Option<Role>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordRequest {
    /// Required when changing your own password.
    pub current_password: Option<String>,
    pub new_password: String,
}

/// Creates an account with the `customer` role (a `role` field in the body is ignored).
#[utoipa::path(post, path = "/v1/users",
    description = "Public. The email must be unused (409 `email-taken`); the password 8-128 characters \
        and not a common one. Answers the profile with a bearer token, so the new customer \
        is signed in at once.",
    tag = "users", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 400, body = Problem),
        (status = 409, body = Problem, description = "email taken"), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>)> {
    let email = Email::parse("email", &req.email)?;
    let name = Name::parse("name", &req.name)?;
    let password = NewPassword::parse("password", &req.password)?;
    let id = edgecart_proto::ids::new_id();
    let view = create_account(&state, id, email, name, &password, Role::Customer).await?;
    let token = state.jwt.issue(view.id, view.role)?;
    Ok((
        StatusCode::CREATED,
        Json(AuthResponse { user: view, token }),
    ))
}

/// Creates an account (used by registration and by the bootstrap admin).
pub async fn create_account(
    state: &AppState,
    id: uuid::Uuid,
    email: Email,
    name: Name,
    password: &NewPassword,
    role: Role,
) -> Result<UserView> {
    // Cheap check first so a duplicate does not cost an argon2 hash; the UNIQUE constraint
    // still decides races.
    let probe = email.clone();
    if state
        .db
        .read(move |c| store::exists_by_email(c, &probe))
        .await?
    {
        return Err(Error::conflict(
            "email-taken",
            "an account with this email already exists",
        ));
    }
    let hash = state.passwords.hash(password.expose()).await?;
    let clock = state.clone();
    let user = state
        .db
        .write(move |tx| {
            let new = NewUser {
                id,
                email: &email,
                name: &name,
                password_hash: &hash,
                role,
            };
            let user = store::insert(tx, &new, &clock.clock.now(), crate::time::now_ms())?;
            events::publish(
                tx,
                &Event::UserRegistered {
                    user_id: user.id,
                    name: user.name.clone(),
                },
            )?;
            Ok::<_, Error>(user)
        })
        .await?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "account created");
    Ok(user.into())
}

/// Exchanges email and password for a token.
#[utoipa::path(post, path = "/v1/auth/login",
    description = "Public. A wrong email and a wrong password get the same 401, so the answer does not \
        tell which accounts exist. The token is valid for the node's `--jwt-ttl-secs`, at this store \
        only. An email this store does not hold is verified with the hub while the store is \
        connected (the store keeps the account from then on); offline, only the accounts this store \
        holds sign in.",
    tag = "users", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<AuthResponse>> {
    let denied = Error::Unauthorized("invalid email or password");
    let Ok(email) = Email::parse("email", &req.email) else {
        return Err(denied);
    };
    if req.password.len() > 1024 {
        return Err(denied);
    }
    let lookup = email.clone();
    let mut found = state
        .db
        .read(move |c| store::credentials(c, &lookup))
        .await?;
    // Not held here: the hub may know the customer from another store (least data per store).
    if found.is_none()
        && crate::sync::accounts::fetch_verified(&state, email.as_str(), &req.password).await?
    {
        found = state
            .db
            .read(move |c| store::credentials(c, &email))
            .await?;
    }
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let ok = state.passwords.verify(&req.password, hash).await?;
    match user {
        Some(user) if ok => {
            let token = state.jwt.issue(user.id, user.role)?;
            Ok(Json(AuthResponse {
                user: user.into(),
                token,
            }))
        }
        _ => Err(denied),
    }
}

/// The caller's own profile.
#[utoipa::path(get, path = "/v1/users/me",
    description = "The profile of the account the bearer token belongs to.",
    tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, auth: AuthUser) -> Result<Json<UserView>> {
    load_visible(&state, auth, auth.id).await.map(Json)
}

/// A profile: your own, or any if admin.
#[utoipa::path(get, path = "/v1/users/{id}",
    description = "Customers may read their own profile only: anyone else's is 404 (never 403), so ids \
        cannot be probed.",
    tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = UserView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_user(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
) -> Result<Json<UserView>> {
    load_visible(&state, auth, id).await.map(Json)
}

async fn load_visible(state: &AppState, auth: AuthUser, id: uuid::Uuid) -> Result<UserView> {
    if !auth.may_access(id) {
        return Err(Error::NotFound("user"));
    }
    state
        .db
        .read(move |c| store::get(c, id))
        .await?
        .map(UserView::from)
        .ok_or(Error::NotFound("user"))
}

/// Updates name or email; admins may also change the role.
#[utoipa::path(patch, path = "/v1/users/{id}",
    description = "Absent fields stay as they are. Changing `role` needs an admin (403 otherwise); a \
        taken email is 409.",
    tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn update_user(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserView>> {
    if !auth.may_access(id) {
        return Err(Error::NotFound("user"));
    }
    if req.role.is_some() {
        auth.require_admin()?;
    }
    let change = ProfileChange {
        name: req
            .name
            .as_deref()
            .map(|n| Name::parse("name", n))
            .transpose()?,
        email: req
            .email
            .as_deref()
            .map(|e| Email::parse("email", e))
            .transpose()?,
        role: req.role,
    };
    let st = state.clone();
    let user = state
        .db
        .write(move |tx| store::update(tx, id, &change, &st.clock.now(), crate::time::now_ms()))
        .await?;
    Ok(Json(user.into()))
}

/// Deletes an account: personal data is erased, the id (and its order history) stays.
#[utoipa::path(delete, path = "/v1/users/{id}",
    description = "The owner or an admin. Name, email and password are erased; the id stays so that \
        orders keep their owner.",
    tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
async fn delete_user(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
) -> Result<StatusCode> {
    if !auth.may_access(id) {
        return Err(Error::NotFound("user"));
    }
    let st = state.clone();
    state
        .db
        .write(move |tx| store::erase(tx, id, &st.clock.now(), crate::time::now_ms()))
        .await?;
    tracing::info!(user_id = %id, "account erased");
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a password. Your own needs `current_password`; an admin may reset anyone's.
#[utoipa::path(put, path = "/v1/users/{id}/password",
    description = "The new password is checked like a registration's; changing your own needs the \
        `current_password` (422 when wrong).",
    tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    auth: AuthUser,
    PathId(id): PathId,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode> {
    if !auth.may_access(id) {
        return Err(Error::NotFound("user"));
    }
    let new = NewPassword::parse("new_password", &req.new_password)?;
    if auth.id == id {
        let current = req
            .current_password
            .ok_or_else(|| Error::invalid("current_password", "is required"))?;
        let hash = state.db.read(move |c| store::password_hash(c, id)).await?;
        if !state.passwords.verify(&current, hash).await? {
            return Err(Error::invalid("current_password", "is not correct"));
        }
    }
    let hash = state.passwords.hash(new.expose()).await?;
    let st = state.clone();
    state
        .db
        .write(move |tx| store::set_password(tx, id, &hash, &st.clock.now(), crate::time::now_ms()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every account (admin).
#[utoipa::path(get, path = "/v1/users",
    description = "Cursor-paginated: pass the answer's `next_page_token` as `page_token` for the next \
        page.",
    tag = "users", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<UserView>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_users(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<UserView>>> {
    auth.require_admin()?;
    let page = PageRequest::try_from(&params)?;
    let rows = state.db.read(move |c| store::list(c, page)).await?;
    let page = Page::from_rows(rows, page, |u| u.id);
    Ok(Json(Page {
        items: page.items.into_iter().map(UserView::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

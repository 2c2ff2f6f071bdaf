//! Users: registration, login, profiles, roles. Passwords are argon2id; tokens are HS256 JWTs.

pub mod auth;
pub mod model;
pub mod password;
pub mod routes;
pub mod store;

pub use auth::AuthUser;
pub use model::Role;

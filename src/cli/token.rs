//! `sluice token create|list|revoke`: the API's bearer tokens.

use sluice::model::Role;

use super::Context;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Make a token and print it, once: only its hash is stored.
    Create {
        /// `read` (see everything), `operate` (also enqueue and act on jobs and queues) or
        /// `admin` (also upload modules).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A name for the token, shown in the audit log.
        #[arg(long)]
        name: String,
    },
    /// List tokens (names and roles; their text cannot be shown again).
    List,
    /// Delete a token: its holder is refused from the next request on.
    Revoke { name: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}` is not a role; one of: read, operate, admin"))
}

pub async fn run(context: &Context, args: Args) -> anyhow::Result<()> {
    let store = context.app()?.store.as_ref();
    match args.action {
        Action::Create { role, name } => {
            let (text, info) =
                sluice::ops::create_token(store, &name, role, sluice::ops::CLI_ACTOR).await?;
            if context.json {
                super::print_json(&serde_json::json!({
                    "name": info.name, "role": info.role, "token": text,
                }));
            } else {
                out!("{text}");
                eprintln!(
                    "token `{}` ({}) created; it is shown only now: keep it somewhere safe",
                    info.name, info.role
                );
            }
        }
        Action::List => {
            let tokens = store.token_list().await?;
            if context.json {
                super::print_json(&serde_json::Value::Array(
                    tokens
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "name": t.name, "role": t.role, "created_at": t.created_at,
                            })
                        })
                        .collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| vec![t.name.clone(), t.role.to_string(), t.created_at.to_string()])
                    .collect();
                super::print_table(&["NAME", "ROLE", "CREATED"], &rows);
            }
        }
        Action::Revoke { name } => {
            sluice::ops::revoke_token(store, &name, sluice::ops::CLI_ACTOR).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "name": name, "revoked": true }));
            } else {
                out!("token {name} revoked");
            }
        }
    }
    Ok(())
}

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
    let target = &context.target;
    match args.action {
        Action::Create { role, name } => {
            let created = target.token_create(&name, role).await?;
            if context.json {
                super::print_view(&created);
            } else {
                out!("{}", created.text);
                eprintln!(
                    "token `{}` ({}) created; it is shown only now: keep it somewhere safe",
                    created.token.name, created.token.role
                );
            }
        }
        Action::List => {
            let tokens = target.tokens().await?;
            if context.json {
                super::print_view(&tokens);
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| vec![t.name.clone(), t.role.to_string(), t.created_at.to_string()])
                    .collect();
                super::print_table(&["NAME", "ROLE", "CREATED"], &rows);
            }
        }
        Action::Revoke { name } => {
            target.token_revoke(&name).await?;
            if context.json {
                super::print_json(&serde_json::json!({ "name": name, "revoked": true }));
            } else {
                out!("token {name} revoked");
            }
        }
    }
    Ok(())
}

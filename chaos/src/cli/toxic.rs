//! `chaos proxy` and `chaos toxic`: a Toxiproxy-API client on the command line.

use super::args::{ProxyCli, ProxyCmd, ToxicCli, ToxicCmd};

pub(super) async fn proxy_cli(args: ProxyCli) -> anyhow::Result<()> {
    use crate::toxictl::ProxyVerb;
    let client = crate::controller::ToxiproxyClient::new(&args.api.host);
    let verb = match args.verb {
        ProxyCmd::List => ProxyVerb::List,
        ProxyCmd::Inspect { name } => ProxyVerb::Inspect(name),
        ProxyCmd::Create {
            name,
            listen,
            upstream,
        } => ProxyVerb::Create {
            name,
            listen,
            upstream,
        },
        ProxyCmd::Toggle { name } => ProxyVerb::Toggle(name),
        ProxyCmd::Delete { name } => ProxyVerb::Delete(name),
    };
    print!("{}", crate::toxictl::proxy(&client, verb).await?);
    Ok(())
}

pub(super) async fn toxic_cli(args: ToxicCli) -> anyhow::Result<()> {
    use crate::toxictl::ToxicVerb;
    let client = crate::controller::ToxiproxyClient::new(&args.api.host);
    let verb = match args.verb {
        ToxicCmd::Add {
            proxy,
            kind,
            name,
            stream,
            toxicity,
            attributes,
            duration,
        } => ToxicVerb::Add {
            proxy,
            kind,
            name,
            stream,
            toxicity,
            attributes,
            duration_ms: duration.map(|d| d.as_millis() as u64),
        },
        ToxicCmd::Update {
            proxy,
            toxic,
            toxicity,
            attributes,
        } => ToxicVerb::Update {
            proxy,
            toxic,
            toxicity,
            attributes,
        },
        ToxicCmd::Remove { proxy, toxic } => ToxicVerb::Remove { proxy, toxic },
    };
    print!("{}", crate::toxictl::toxic(&client, verb).await?);
    Ok(())
}

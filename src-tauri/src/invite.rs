//! Invite links: `confab://join?server=…&room=…[&name=…]`. A link only fills in the join
//! form; it never joins or calls by itself.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Invite {
    pub server: String,
    pub room: String,
    pub name: Option<String>,
}

/// Parses an invite link, with a worded error for anything else.
pub fn parse(link: &str) -> Result<Invite, String> {
    let url = Url::parse(link.trim()).map_err(|e| format!("`{link}` is not a link ({e})"))?;
    if url.scheme() != "confab" {
        return Err(format!(
            "`{link}` is not a Confab link (it should start with confab://)"
        ));
    }
    // confab://join?… (host "join") or confab:join?… (path "join")
    let action = url
        .host_str()
        .map(str::to_owned)
        .unwrap_or_else(|| url.path().trim_matches('/').to_owned());
    if action != "join" {
        return Err(format!("Confab links can only join a room, not `{action}`"));
    }
    let mut server = None;
    let mut room = None;
    let mut name = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "server" => server = Some(v.into_owned()),
            "room" => room = Some(v.into_owned()),
            "name" => name = Some(v.into_owned()),
            _ => {}
        }
    }
    let room = room.ok_or("the link has no room")?;
    confab_protocol::validate_room(&room)
        .map_err(|e| format!("the link's room is not valid: {e}"))?;
    let server = server.ok_or("the link has no server")?;
    let server = confab_engine::signaling::normalize_urls(&server)
        .map_err(|e| format!("the link's server is not valid: {e}"))?
        .join(", ");
    if let Some(n) = &name {
        confab_protocol::validate_name(n)
            .map_err(|e| format!("the link's name is not valid: {e}"))?;
    }
    Ok(Invite { server, room, name })
}

/// Builds an invite link.
pub fn make(server: &str, room: &str) -> String {
    let mut url = Url::parse("confab://join").expect("static");
    url.query_pairs_mut()
        .append_pair("server", server)
        .append_pair("room", room);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_link_and_round_trips() {
        let link = make("ws://192.168.1.20:8787/ws", "team-1");
        assert_eq!(
            link,
            "confab://join?server=ws%3A%2F%2F192.168.1.20%3A8787%2Fws&room=team-1"
        );
        let inv = parse(&link).unwrap();
        assert_eq!(
            inv,
            Invite {
                server: "ws://192.168.1.20:8787/ws".into(),
                room: "team-1".into(),
                name: None,
            }
        );
        let inv = parse("confab://join?server=10.0.0.1:9000&room=r&name=Zo%C3%AB&call=1").unwrap();
        assert_eq!(inv.server, "ws://10.0.0.1:9000/ws");
        assert_eq!(inv.name.as_deref(), Some("Zoë"));
        // `call=1` in a link is ignored: a link never calls by itself.
        assert_eq!(serde_json::to_value(&inv).unwrap().get("call"), None);
    }

    #[test]
    fn bad_links_are_worded_errors() {
        for (link, words) in [
            ("", "not a link"),
            ("https://example.org/?room=r", "not a Confab link"),
            ("confab://delete?room=r&server=x:1", "only join"),
            ("confab://join?server=x:1", "no room"),
            ("confab://join?room=r", "no server"),
            ("confab://join?room=a%20b&server=x:1", "room is not valid"),
            ("confab://join?room=r&server=ftp://x", "server is not valid"),
            (
                "confab://join?room=r&server=x:1&name=%0A",
                "name is not valid",
            ),
        ] {
            let e = parse(link).unwrap_err();
            assert!(e.contains(words), "{link}: {e}");
        }
    }
}

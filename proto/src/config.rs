//! Pure helpers for the daemons' TOML configuration: address checks and path resolution with
//! messages that name the file and the key (reading the file is the daemons' business).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {key} = \"{value}\" {problem}")]
pub struct ConfigValueError {
    pub file: String,
    pub key: String,
    pub value: String,
    pub problem: String,
}

/// Checks a listening address such as `0.0.0.0:4433` or `[::1]:9100`.
pub fn listen_addr(file: &Path, key: &str, value: &str) -> Result<SocketAddr, ConfigValueError> {
    value.parse().map_err(|_| ConfigValueError {
        file: file.display().to_string(),
        key: key.to_owned(),
        value: value.to_owned(),
        problem:
            "is not a listening address; write IP:PORT, e.g. \"0.0.0.0:4433\" or \"127.0.0.1:9100\""
                .into(),
    })
}

/// Checks a `host:port` to dial (the host may be a name resolved later) and splits it.
pub fn host_port(file: &Path, key: &str, value: &str) -> Result<(String, u16), ConfigValueError> {
    let err = |problem: &str| ConfigValueError {
        file: file.display().to_string(),
        key: key.to_owned(),
        value: value.to_owned(),
        problem: problem.to_owned(),
    };
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(|| {
        err("has no port; write HOST:PORT, e.g. \"gateway.hospital.example:4433\"")
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| err("has a port that is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(err("has port 0; name the gateway's real UDP port"));
    }
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_host {
        return Err(err(
            "has an invalid host name; write HOST:PORT, e.g. \"gateway.hospital.example:4433\"",
        ));
    }
    Ok((host.to_owned(), port))
}

/// Resolves a path from the config file against the folder that holds the config file.
pub fn resolve(config_dir: &Path, value: &Path) -> PathBuf {
    if value.is_absolute() {
        value.to_path_buf()
    } else {
        config_dir.join(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_and_their_errors_name_file_and_key() {
        let f = Path::new("/etc/tpg/gateway.toml");
        assert_eq!(
            listen_addr(f, "link.listen", "0.0.0.0:4433").map(|a| a.port()),
            Ok(4433)
        );
        let e = listen_addr(f, "link.listen", "0.0.0.0").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/etc/tpg/gateway.toml: link.listen = \"0.0.0.0\" is not a listening address"
            ),
            "{e}"
        );
    }

    #[test]
    fn dial_addresses_accept_names_and_ips() {
        let f = Path::new("agent.toml");
        assert_eq!(
            host_port(f, "k", "gw.example:4433"),
            Ok(("gw.example".into(), 4433))
        );
        assert_eq!(
            host_port(f, "k", "127.0.0.1:5"),
            Ok(("127.0.0.1".into(), 5))
        );
        assert_eq!(host_port(f, "k", "[::1]:5"), Ok(("::1".into(), 5)));
        for bad in [
            "gw.example",
            "gw.example:x",
            "gw.example:0",
            ":4433",
            "gw example:1",
            "gw:70000",
        ] {
            assert!(host_port(f, "link.gateway", bad).is_err(), "{bad}");
        }
        assert!(host_port(f, "link.gateway", "gw")
            .unwrap_err()
            .to_string()
            .contains("has no port"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        assert_eq!(
            resolve(Path::new("/etc/tpg"), Path::new("pki/ca.pem")),
            PathBuf::from("/etc/tpg/pki/ca.pem")
        );
        assert_eq!(
            resolve(Path::new("/etc/tpg"), Path::new("/srv/ca.pem")),
            PathBuf::from("/srv/ca.pem")
        );
    }
}

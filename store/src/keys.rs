//! Keys of several names for sled trees: each name length-prefixed (four bytes, big endian),
//! so that no name can run into the next (`("l", "i01")` and `("li", "01")` differ).

/// The key of `parts`, in order.
pub fn joined(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The `N` names [`joined`] wrote, or `None` for bytes it did not write.
pub fn split<const N: usize>(mut bytes: &[u8]) -> Option<[String; N]> {
    let mut parts = Vec::with_capacity(N);
    for _ in 0..N {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        parts.push(String::from_utf8(rest.get(..len)?.to_vec()).ok()?);
        bytes = &rest[len..];
    }
    if !bytes.is_empty() {
        return None;
    }
    parts.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_back_apart_and_nothing_else_reads_as_a_key() {
        let key = joined(&["li", "01CASE", "报告"]);
        assert_eq!(
            split::<3>(&key),
            Some(["li".to_owned(), "01CASE".to_owned(), "报告".to_owned()])
        );
        assert_ne!(joined(&["l", "i01CASE"]), joined(&["li", "01CASE"]));
        assert_eq!(split::<2>(&key), None, "a name left over");
        assert_eq!(split::<3>(&key[..key.len() - 1]), None, "cut short");
    }
}

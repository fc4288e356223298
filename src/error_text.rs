//! One line of text for an error and the causes under it, for logs and status fields.

/// `error: cause: cause ...`; a cause whose text the line already holds is not repeated.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("probe failed")]
        Plain(#[source] std::io::Error),
        #[error("probe failed: {0}")]
        Repeats(#[source] std::io::Error),
    }

    #[test]
    fn causes_join_once() {
        let io = || std::io::Error::other("connection refused");
        assert_eq!(
            error_text(&Outer::Plain(io())),
            "probe failed: connection refused"
        );
        assert_eq!(
            error_text(&Outer::Repeats(io())),
            "probe failed: connection refused"
        );
    }
}

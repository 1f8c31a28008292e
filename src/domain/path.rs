//! An id as one segment of a URL path (`/v2/service_instances/{id}`): the client's
//! requests, the dashboard's links and the liveness URL in a binding's credentials all
//! build paths from ids a platform chose, so all encode them this one way.

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `text` as one path segment: anything but unreserved characters percent-encoded
/// (upper-case hex), so a `/`, `?` or `#` in an id cannot change the path.
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay_as_they_are() {
        assert_eq!(segment("i-1_a.b~c"), "i-1_a.b~c");
        assert_eq!(segment("a/b?c#d e%"), "a%2Fb%3Fc%23d%20e%25");
        assert_eq!(segment("é"), "%C3%A9");
        // What the client sends as an instance or binding id.
        assert_eq!(segment("Az09-_.~"), "Az09-_.~");
        assert_eq!(segment("a/b c%é"), "a%2Fb%20c%25%C3%A9");
    }
}

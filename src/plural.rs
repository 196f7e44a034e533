//! Counts in words ("1 tag", "2 tags"): every count a person reads in a summary, a log line
//! or an error goes through here, so none of them says "1 tags".

/// `n` followed by the noun, singular for exactly one. `noun` is the singular; the plural
/// adds an `s` (every noun we count does), or pass [`count_as`] an irregular one.
pub fn count<N: Number>(n: N, noun: &str) -> String {
    if n == N::from(1) {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `n` with an explicit plural, for nouns that do not just take an `s` ("retry", "retries").
pub fn count_as<N: Number>(n: N, singular: &str, plural: &str) -> String {
    if n == N::from(1) {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

/// The integer types counts come in (`usize` lengths, `u64` counters).
pub trait Number: std::fmt::Display + PartialEq + From<u8> {}
impl<N: std::fmt::Display + PartialEq + From<u8>> Number for N {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(count(1u32, "tag"), "1 tag");
        assert_eq!(count(0u32, "tag"), "0 tags");
        assert_eq!(count(2u64, "image"), "2 images");
        assert_eq!(count_as(1u32, "retry", "retries"), "1 retry");
        assert_eq!(count_as(3u32, "retry", "retries"), "3 retries");
    }
}

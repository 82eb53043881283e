//! Kubernetes resource quantities (`500m`, `2.5`, `256Mi`, `1G`, `129e6`...).
//!
//! The grammar is the one of `k8s.io/apimachinery/pkg/api/resource`:
//!
//! ```text
//! <quantity>        ::= <sign>? <number> <suffix>
//! <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= e <sign>? <digits> | E <sign>? <digits>
//! ```
//!
//! Conversions round up like Kubernetes' `Value()` / `MilliValue()`: `0.1m` of CPU is
//! one millicore, never zero, so a request is never understated.

use thiserror::Error;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity {0:?} has no digits")]
    NoDigits(String),
    #[error("quantity {0:?} has an unknown suffix")]
    BadSuffix(String),
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

// More significant digits than this cannot be held exactly in the u128 mantissa; no real
// request or allocatable comes close.
const MAX_SIGNIFICANT_DIGITS: usize = 36;
// Bounds the decimal exponent so that scale arithmetic stays in i32 and 10^n lookups
// stay small; anything beyond is far outside i64 anyway.
const MAX_EXPONENT: i32 = 100;

/// A parsed quantity: `(-1)^negative × mantissa × 10^exp10 × 2^exp2`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses a quantity string exactly (no floating point).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };

        let mut mantissa: u128 = 0;
        let mut significant = 0usize;
        let mut digits = 0usize;
        let mut frac_digits: i32 = 0;
        let mut seen_point = false;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    if seen_point {
                        frac_digits += 1;
                    }
                    if mantissa != 0 || b != b'0' {
                        significant += 1;
                        if significant > MAX_SIGNIFICANT_DIGITS {
                            return Err(QuantityError::OutOfRange(text.to_owned()));
                        }
                    }
                    mantissa = mantissa * 10 + u128::from(b - b'0');
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return Err(QuantityError::NoDigits(text.to_owned()));
        }

        let suffix = &text[i..];
        let (suffix_exp10, exp2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            s if s.starts_with(['e', 'E']) => (parse_exponent(&s[1..]).ok_or_else(|| bad_suffix(text))?, 0),
            _ => return Err(bad_suffix(text)),
        };
        Ok(Self { negative, mantissa, exp10: suffix_exp10 - frac_digits, exp2 })
    }

    /// The value in whole units (bytes for memory), rounded up.
    pub fn value(&self) -> Option<i64> {
        self.scaled(0)
    }

    /// The value in thousandths of a unit (millicores for CPU), rounded up.
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled(3)
    }

    /// `ceil(self × 10^scale)` as an i64, or `None` when it does not fit.
    fn scaled(&self, scale: i32) -> Option<i64> {
        let magnitude = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let k = self.exp10 + scale;
        // Rounding "up" is towards +infinity, as Kubernetes does, so a negative value's
        // magnitude rounds down.
        let magnitude = if k >= 0 {
            magnitude.checked_mul(10u128.checked_pow(k.unsigned_abs())?)?
        } else {
            match 10u128.checked_pow(k.unsigned_abs()) {
                Some(den) => {
                    let (q, r) = (magnitude / den, magnitude % den);
                    if r != 0 && !self.negative { q + 1 } else { q }
                }
                // The divisor exceeds any u128 numerator: the quotient is below one.
                None => u128::from(magnitude != 0 && !self.negative),
            }
        };
        let magnitude = i64::try_from(magnitude).ok()?;
        Some(if self.negative { -magnitude } else { magnitude })
    }
}

fn bad_suffix(text: &str) -> QuantityError {
    QuantityError::BadSuffix(text.to_owned())
}

fn parse_exponent(s: &str) -> Option<i32> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let e: i32 = digits.parse().ok()?;
    if e > MAX_EXPONENT {
        return None;
    }
    Some(if negative { -e } else { e })
}

/// Parses a CPU quantity into millicores (rounded up).
pub fn cpu_millis(text: &str) -> Result<i64, QuantityError> {
    Quantity::parse(text)?.milli_value().ok_or_else(|| QuantityError::OutOfRange(text.to_owned()))
}

/// Parses a memory (or any byte) quantity into bytes (rounded up).
pub fn bytes(text: &str) -> Result<i64, QuantityError> {
    Quantity::parse(text)?.value().ok_or_else(|| QuantityError::OutOfRange(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        for (text, millis) in [
            ("500m", 500),
            ("1", 1000),
            ("2.5", 2500),
            ("0.1", 100),
            (".5", 500),
            ("5.", 5000),
            ("16", 16_000),
            ("1k", 1_000_000),
            ("100u", 1),
            ("0.1m", 1),
            ("1n", 1),
            ("0", 0),
            ("0m", 0),
            ("+250m", 250),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("-1", -1000),
        ] {
            assert_eq!(cpu_millis(text), Ok(millis), "{text}");
        }
    }

    #[test]
    fn memory_quantities() {
        for (text, b) in [
            ("256Mi", 256 << 20),
            ("1Gi", 1 << 30),
            ("64Gi", 64 << 30),
            ("1G", 1_000_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129E6", 129_000_000),
            ("123M", 123_000_000),
            ("1k", 1000),
            ("1Ki", 1024),
            ("1.5Ki", 1536),
            ("0.5", 1),
            ("1m", 1),
            ("1Ei", 1 << 60),
            ("1E", 1_000_000_000_000_000_000),
            ("1e+2", 100),
        ] {
            assert_eq!(bytes(text), Ok(b), "{text}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        for text in [
            "", "abc", "m", "1x", "1 Gi", " 1", "1Gi ", "1..5", "1.2.3", "--1", "1e", "1e+", "1ee3", "Ki", "1KI",
            "1mi", ".",
        ] {
            assert!(Quantity::parse(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn too_large_values_are_out_of_range() {
        assert!(matches!(bytes("16Ei"), Err(QuantityError::OutOfRange(_))));
        assert!(matches!(bytes("1e100"), Err(QuantityError::OutOfRange(_))));
        assert!(bytes("1e1000").is_err());
        assert!(bytes("1234567890123456789012345678901234567890").is_err());
        assert_eq!(bytes("1e-100"), Ok(1));
        assert_eq!(bytes("0e-100"), Ok(0));
    }
}

//! Placeholder: the doctor is built under issue 4.

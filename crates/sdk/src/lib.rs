//! Placeholder: the SDK is built under issue 6.

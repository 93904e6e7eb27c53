//! Short texts the report holds many copies of (event kinds, methods,
//! tools), held once each and pointed to.

use std::rc::Rc;

/// One shared copy of a short text (an event kind, a method, a tool),
/// in 8 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Word(Rc<String>);

impl From<&str> for Word {
    fn from(text: &str) -> Word {
        Word(Rc::new(text.to_string()))
    }
}

impl std::ops::Deref for Word {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Word {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&**self, f)
    }
}

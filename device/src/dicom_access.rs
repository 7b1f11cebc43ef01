//! Who may open an association with the storage receiver: the called AE
//! title must be ours, and with an allow-list (`serve --allow-calling-ae`)
//! the calling AE title must be on it. Anything else is rejected in the
//! association itself (A-ASSOCIATE-RJ, "calling AE title not recognised"),
//! before a single object is sent, and the refusal is remembered so that the
//! receiver can log which AE title was turned away.

use std::sync::{Arc, Mutex};

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

/// The receiver's access rule for one association.
#[derive(Debug, Clone, Default)]
pub struct CallerPolicy {
    /// Calling AE titles allowed (trimmed); empty: any caller.
    allowed: Vec<String>,
    /// The calling AE title of the last association this policy refused.
    refused: Arc<Mutex<Option<String>>>,
}

/// AE titles are up to 16 characters, padded with spaces on the wire.
fn normalised(ae_title: &str) -> &str {
    ae_title.trim_matches(|c: char| c == ' ' || c == '\0')
}

impl CallerPolicy {
    pub fn new(allowed: &[String]) -> CallerPolicy {
        CallerPolicy {
            allowed: allowed.iter().map(|a| normalised(a).to_string()).collect(),
            refused: Arc::default(),
        }
    }

    /// The calling AE title this policy refused, if it refused one.
    pub fn refused_caller(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    /// The decision, apart from the protocol: `Err` names the reason.
    pub fn decide(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if normalised(called_ae_title) != normalised(this_ae_title) {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let caller = normalised(calling_ae_title);
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a == caller) {
            if let Ok(mut refused) = self.refused.lock() {
                *refused = Some(caller.to_string());
            }
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

impl AccessControl for CallerPolicy {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        self.decide(this_ae_title, calling_ae_title, called_ae_title)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AssociationRJServiceUserReason::{CalledAETitleNotRecognized, CallingAETitleNotRecognized};

    #[test]
    fn without_a_list_any_caller_of_our_title_is_let_in() {
        let policy = CallerPolicy::new(&[]);
        assert_eq!(policy.decide("TUMORXAI", "ANYONE", "TUMORXAI"), Ok(()));
        assert_eq!(
            policy.decide("TUMORXAI", "ANYONE", "OTHER"),
            Err(CalledAETitleNotRecognized)
        );
        assert_eq!(policy.refused_caller(), None);
    }

    #[test]
    fn with_a_list_only_its_callers_are_let_in_and_the_refused_one_is_named() {
        let policy = CallerPolicy::new(&["SCANNER1".into(), " MR2 ".into()]);
        assert_eq!(policy.decide("TUMORXAI", "SCANNER1", "TUMORXAI"), Ok(()));
        // Space padding as on the wire.
        assert_eq!(policy.decide("TUMORXAI", "MR2       ", "TUMORXAI "), Ok(()));
        assert_eq!(
            policy.decide("TUMORXAI", "ROGUE", "TUMORXAI"),
            Err(CallingAETitleNotRecognized)
        );
        assert_eq!(policy.refused_caller().as_deref(), Some("ROGUE"));
        // Case matters: AE titles are compared as written.
        assert_eq!(
            policy.decide("TUMORXAI", "scanner1", "TUMORXAI"),
            Err(CallingAETitleNotRecognized)
        );
    }
}

//! The words the operator writes on a job: condition types, condition statuses and the reasons of
//! conditions and Events. Typed, so that no decision branches on a string and a reason cannot be
//! misspelt; the strings are what users, `kubectl wait`, the README's troubleshooting table and
//! the Argo CD health check read, so they never change.

use std::fmt;

/// The conditions of a SkillTrainingJob, in the order status lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    Validated,
    Submitted,
    Succeeded,
    /// Only for jobs with `spec.registry`.
    Registered,
    Ready,
}

impl ConditionType {
    pub const ALL: [ConditionType; 5] = [
        ConditionType::Validated,
        ConditionType::Submitted,
        ConditionType::Succeeded,
        ConditionType::Registered,
        ConditionType::Ready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Validated => "Validated",
            ConditionType::Submitted => "Submitted",
            ConditionType::Succeeded => "Succeeded",
            ConditionType::Registered => "Registered",
            ConditionType::Ready => "Ready",
        }
    }
}

/// `metav1.Condition.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Why a condition has its status, or why an Event was published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // Validated
    ValidationPassed,
    ValidationFailed,
    EndpointNotAllowed,
    InvalidReference,
    // Submitted
    Submitting,
    JobSubmitted,
    SubmissionRejected,
    // Ready while a run is in progress
    Queued,
    Training,
    Evaluating,
    Suspended,
    InvalidSpec,
    // Succeeded
    InProgress,
    TrainingSucceeded,
    TrainingFailed,
    Cancelled,
    DeadlineExceeded,
    JobNotFound,
    EvaluationInvalid,
    ResultsUnavailable,
    // Ready once over, or in trouble
    ArtifactsAvailable,
    ArtifactsUnavailable,
    CredentialsError,
    RateLimited,
    CxoneUnavailable,
    ObjectNotOwned,
    // Registered
    Registering,
    Promoted,
    RegisteredNotPromoted,
    GateNotMet,
    RegistryAuthFailed,
    RegistryUnreachable,
    RegistryRejected,
    RegistryNotAllowed,
    RegistrationFailed,
    // Events only
    Validated,
    Submitted,
    Succeeded,
    Superseded,
    ArtifactsRefreshed,
    CancelFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ValidationPassed => "ValidationPassed",
            Reason::ValidationFailed => "ValidationFailed",
            Reason::EndpointNotAllowed => "EndpointNotAllowed",
            Reason::InvalidReference => "InvalidReference",
            Reason::Submitting => "Submitting",
            Reason::JobSubmitted => "JobSubmitted",
            Reason::SubmissionRejected => "SubmissionRejected",
            Reason::Queued => "Queued",
            Reason::Training => "Training",
            Reason::Evaluating => "Evaluating",
            Reason::Suspended => "Suspended",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InProgress => "InProgress",
            Reason::TrainingSucceeded => "TrainingSucceeded",
            Reason::TrainingFailed => "TrainingFailed",
            Reason::Cancelled => "Cancelled",
            Reason::DeadlineExceeded => "DeadlineExceeded",
            Reason::JobNotFound => "JobNotFound",
            Reason::EvaluationInvalid => "EvaluationInvalid",
            Reason::ResultsUnavailable => "ResultsUnavailable",
            Reason::ArtifactsAvailable => "ArtifactsAvailable",
            Reason::ArtifactsUnavailable => "ArtifactsUnavailable",
            Reason::CredentialsError => "CredentialsError",
            Reason::RateLimited => "RateLimited",
            Reason::CxoneUnavailable => "CxoneUnavailable",
            Reason::ObjectNotOwned => "ObjectNotOwned",
            Reason::Registering => "Registering",
            Reason::Promoted => "Promoted",
            Reason::RegisteredNotPromoted => "RegisteredNotPromoted",
            Reason::GateNotMet => "GateNotMet",
            Reason::RegistryAuthFailed => "RegistryAuthFailed",
            Reason::RegistryUnreachable => "RegistryUnreachable",
            Reason::RegistryRejected => "RegistryRejected",
            Reason::RegistryNotAllowed => "RegistryNotAllowed",
            Reason::RegistrationFailed => "RegistrationFailed",
            Reason::Validated => "Validated",
            Reason::Submitted => "Submitted",
            Reason::Succeeded => "Succeeded",
            Reason::Superseded => "Superseded",
            Reason::ArtifactsRefreshed => "ArtifactsRefreshed",
            Reason::CancelFailed => "CancelFailed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_valid_condition_reasons() {
        // metav1.Condition.reason: CamelCase, `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, ≤ 1024.
        let all = [
            Reason::ValidationPassed,
            Reason::ValidationFailed,
            Reason::EndpointNotAllowed,
            Reason::InvalidReference,
            Reason::Submitting,
            Reason::JobSubmitted,
            Reason::SubmissionRejected,
            Reason::Queued,
            Reason::Training,
            Reason::Evaluating,
            Reason::Suspended,
            Reason::InvalidSpec,
            Reason::InProgress,
            Reason::TrainingSucceeded,
            Reason::TrainingFailed,
            Reason::Cancelled,
            Reason::DeadlineExceeded,
            Reason::JobNotFound,
            Reason::EvaluationInvalid,
            Reason::ResultsUnavailable,
            Reason::ArtifactsAvailable,
            Reason::ArtifactsUnavailable,
            Reason::CredentialsError,
            Reason::RateLimited,
            Reason::CxoneUnavailable,
            Reason::ObjectNotOwned,
            Reason::Registering,
            Reason::Promoted,
            Reason::RegisteredNotPromoted,
            Reason::GateNotMet,
            Reason::RegistryAuthFailed,
            Reason::RegistryUnreachable,
            Reason::RegistryRejected,
            Reason::RegistryNotAllowed,
            Reason::RegistrationFailed,
            Reason::Validated,
            Reason::Submitted,
            Reason::Succeeded,
            Reason::Superseded,
            Reason::ArtifactsRefreshed,
            Reason::CancelFailed,
        ];
        for r in all {
            let s = r.as_str();
            assert!(s.starts_with(|c: char| c.is_ascii_uppercase()), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert_eq!(format!("{r:?}"), s, "the string is the variant's name");
        }
        let types: Vec<&str> = ConditionType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            types,
            ["Validated", "Submitted", "Succeeded", "Registered", "Ready"]
        );
    }
}

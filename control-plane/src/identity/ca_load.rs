//! Opening the CA: the upstream CA (if any) is loaded and checked (`upstream_check.rs`)
//! before the state directory is read or written, then the CA is loaded from it or a new
//! one created and saved.

use super::ca::{check_trust_domain, create, Ca, CaError, CaParams};
use super::state::{self, CaState};
use super::upstream_check::load_checked;
use super::Clock;

impl Ca {
    /// Load the CA from `params.state_dir`, or create and persist a new one there.
    pub fn load_or_init(params: &CaParams, clock: &dyn Clock) -> Result<Ca, CaError> {
        let upstream = load_checked(params, clock)?;
        let state = match state::load(&params.state_dir)? {
            Some(state) => state,
            None => {
                let slot = create(params, upstream.as_ref(), clock)?;
                let state = CaState::new(params.trust_domain.to_string(), slot);
                state::save(&params.state_dir, &state)?;
                tracing::info!(state_dir = %params.state_dir.display(), "created a new CA");
                state
            }
        };
        check_trust_domain(params, &state)?;
        Ca::from_slot(params, &state.current, upstream.as_ref(), clock)
    }
}

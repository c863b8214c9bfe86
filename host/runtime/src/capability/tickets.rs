//! `tickets`: filing tickets and scheduled work items.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::HostState;
use crate::bindings::tickets::{Filed, Host, Ticket};
use crate::bindings::types::{HostError, RunMode};
use crate::capability::{CallSummary, Capability};
use crate::store::outcome_for;

/// Where a ticket is filed from.
#[derive(Debug, Clone, Serialize)]
pub struct TicketOrigin {
    /// The run that filed it.
    pub run_id: String,
    /// The plugin that filed it.
    pub plugin: String,
    /// The tenant of the run's device.
    pub tenant_id: String,
    /// The device the ticket is about.
    pub device_id: String,
}

/// A ticket queue.
#[async_trait]
pub trait TicketsProvider: Send + Sync {
    /// Files `ticket` (its title is not empty); in plan mode returns a
    /// placeholder id and files nothing.
    async fn file(
        &self,
        ticket: Ticket,
        origin: TicketOrigin,
        mode: RunMode,
    ) -> Result<Filed, HostError>;
}

/// A ticket kept by [`MemoryTickets`].
#[derive(Debug, Clone, Serialize)]
pub struct StoredTicket {
    /// Its id.
    pub id: String,
    /// What was filed.
    pub ticket: Ticket,
    /// Who filed it.
    pub origin: TicketOrigin,
}

/// Tickets in memory, for the local runner and tests.
#[derive(Debug, Default)]
pub struct MemoryTickets {
    tickets: Mutex<Vec<StoredTicket>>,
}

impl MemoryTickets {
    /// Every ticket filed so far.
    pub fn all(&self) -> Vec<StoredTicket> {
        self.tickets.lock().expect("tickets lock poisoned").clone()
    }
}

#[async_trait]
impl TicketsProvider for MemoryTickets {
    async fn file(
        &self,
        ticket: Ticket,
        origin: TicketOrigin,
        mode: RunMode,
    ) -> Result<Filed, HostError> {
        let mut tickets = self.tickets.lock().expect("tickets lock poisoned");
        let id = match mode {
            RunMode::Plan => "planned".to_string(),
            RunMode::Apply => {
                let id = format!("T-{}", tickets.len() + 1);
                tickets.push(StoredTicket {
                    id: id.clone(),
                    ticket,
                    origin,
                });
                id
            }
        };
        Ok(Filed {
            id,
            outcome: outcome_for(mode),
        })
    }
}

impl Host for HostState {
    async fn file(&mut self, ticket: Ticket) -> wasmtime::Result<Result<Filed, HostError>> {
        let call = CallSummary {
            capability: Capability::Tickets,
            function: "file",
            arguments: format!("[{}] {}", ticket.queue, ticket.title),
        };
        if let Err(e) = self.authorize(&call, [ticket.queue.as_str()])? {
            return Ok(Err(e));
        }
        // Checked here so no provider sees a ticket without a title.
        if ticket.title.trim().is_empty() {
            return Ok(Err(HostError::InvalidArgument(
                "a ticket needs a title".into(),
            )));
        }
        let scope = self.scope(Capability::Tickets)?;
        let origin = TicketOrigin {
            run_id: scope.run_id.clone(),
            plugin: self.plugin.clone(),
            tenant_id: scope.device.tenant_id.clone(),
            device_id: ticket
                .device_id
                .clone()
                .unwrap_or_else(|| scope.device.id.clone()),
        };
        let mode = scope.mode;
        let device = self.run_device(Capability::Tickets)?;
        self.mutate(
            &call,
            device.tickets.file(ticket, origin, mode),
            crate::store::make_again(),
        )
        .await
    }
}

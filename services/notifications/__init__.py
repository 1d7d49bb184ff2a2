"""Notifications: e-mails and Standard Webhooks deliveries to exam centers."""

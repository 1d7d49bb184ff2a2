"""The CPF declaration (*accrochage*) to the Caisse des Dépôts: flux, acknowledgements."""

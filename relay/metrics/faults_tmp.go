package metrics

// Temporary until the local-fault counter lands (hardening-metrics branch).
const (
	FaultResources     = "resources"
	FaultSecret        = "secret"
	FaultDatabase      = "database"
	FaultRowUnreadable = "row_unreadable"
	FaultRecordRefused = "record_refused"
)

// LocalFault is a stand-in.
func (m *Metrics) LocalFault(kind string, n int) {}

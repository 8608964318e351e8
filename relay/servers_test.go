package relay

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewConnLimits(t *testing.T) {
	tests := []struct {
		name      string
		nofile    uint64
		workers   int
		proxyMode bool
		want      connLimits
	}{
		{"Unknown", 0, 64, false, connLimits{ops: 64, operator: 512}},
		{"Unlimited", math.MaxUint64, 10000, true, connLimits{ops: 64, operator: 512, public: 4096}},
		{"ContainerDefault", 1 << 20, 64, false, connLimits{ops: 64, operator: 512}},
		{"ContainerDefaultProxy", 1 << 20, 64, true, connLimits{ops: 64, operator: 512, public: 4096}},
		{"ManyWorkers", 65536, 10000, true, connLimits{ops: 64, operator: 512, public: 4096}},
		// 1024 - 2*64 - 64 = 832 left: ops 104 -> 64, API 416.
		{"Soft1024", 1024, 64, false, connLimits{ops: 64, operator: 416, short: true}},
		// 512 - 128 - 64 = 320 left: ops 40, API 160; with the proxy: ops 40, admin 40, public 80.
		{"Low", 512, 64, false, connLimits{ops: 40, operator: 160, short: true}},
		{"LowProxy", 512, 64, true, connLimits{ops: 40, operator: 40, public: 80, short: true}},
		{"WorkersTakeEverything", 1024, 1000, true, connLimits{ops: minConns, operator: minConns, public: minConns, short: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, newConnLimits(tt.nofile, tt.workers, tt.proxyMode))
		})
	}
}

package tracescrub.capture;

import org.springframework.boot.health.contributor.Health;
import org.springframework.boot.health.contributor.HealthIndicator;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.stereotype.Component;

/** A health indicator that queries the person table, so /actuator/health has a JDBC child span. */
@Component("personDb")
public class HealthChecks implements HealthIndicator {
    private final JdbcTemplate jdbc;

    public HealthChecks(JdbcTemplate jdbc) {
        this.jdbc = jdbc;
    }

    @Override
    public Health health() {
        Long n = jdbc.queryForObject("SELECT count(*) FROM person", Long.class);
        return Health.up().withDetail("people", n).build();
    }
}
